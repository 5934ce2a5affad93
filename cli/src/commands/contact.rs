//! `tern contact add|list|verify`.

use std::time::Duration;

use tern_core::{ContactInfo, Verification};

use crate::args::{ContactCommand, VerifyArgs};
use crate::output::Printer;
use crate::qr;
use crate::record::{ContactRecord, Record, SafetyNumberRecord, verification_name};
use crate::session::Session;

/// How long contact look-ups wait for the relay.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a contact subcommand.
pub async fn run(session: &Session, command: ContactCommand, out: Printer) -> anyhow::Result<()> {
    match command {
        ContactCommand::Add { name } => {
            session.online(RELAY_TIMEOUT).await?;
            let contact = session.client.add_contact(name).await?;
            if contact.verification == Verification::Unverified {
                out.warn(format!(
                    "{}'s identity CHANGED since you verified it; compare safety numbers with \
                     `tern contact verify {}`",
                    contact.user_name, contact.user_name
                ));
            }
            print_contact(&contact, out)
        }
        ContactCommand::List => {
            for contact in session.client.contacts()? {
                print_contact(&contact, out)?;
            }
            Ok(())
        }
        ContactCommand::Verify(args) => verify(session, &args, out),
    }
}

fn print_contact(contact: &ContactInfo, out: Printer) -> anyhow::Result<()> {
    let record = ContactRecord::new(contact);
    let text = format!(
        "{}  {}  {}",
        record.name, record.user_id, record.verification
    );
    out.emit(&Record::Contact(record), || text)
}

fn verify(session: &Session, args: &VerifyArgs, out: Printer) -> anyhow::Result<()> {
    let contact = session.contact(&args.name)?;
    if args.accept_change {
        session
            .client
            .acknowledge_identity_change(contact.user_id)?;
    }
    let number = session.client.safety_number(contact.user_id)?;
    if args.mark_verified {
        session.client.set_verified(contact.user_id, true)?;
    }
    let state = session.contact(&args.name)?.verification;
    let grouped = group_digits(&number);
    let record = SafetyNumberRecord {
        name: contact.user_name.clone(),
        safety_number: number.clone(),
        verification: verification_name(state),
    };
    out.emit(&Record::SafetyNumber(record), || {
        let mut text = format!("Safety number with {}:\n\n{grouped}\n", contact.user_name);
        if !args.no_qr {
            text.push('\n');
            text.push_str(&qr::render(number.as_bytes()));
        }
        text.push_str(&match state {
            Verification::Verified => format!("\n{} is verified.", contact.user_name),
            Verification::Unverified => format!(
                "\n{}'s identity CHANGED since you verified it: compare again, then run \
                     `tern contact verify {} --accept-change`.",
                contact.user_name, contact.user_name
            ),
            Verification::Default => format!(
                "\nCompare it with {} in person or over a trusted channel, then run \
                     `tern contact verify {} --mark-verified`.",
                contact.user_name, contact.user_name
            ),
        });
        text
    })
}

/// Digits in groups of five, six groups a line.
fn group_digits(digits: &str) -> String {
    let groups: Vec<&str> = digits
        .as_bytes()
        .chunks(5)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    groups
        .chunks(6)
        .map(|line| line.join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::group_digits;

    #[test]
    fn safety_numbers_are_grouped_for_reading_aloud() {
        let digits: String = (0..60).map(|i| char::from(b'0' + (i % 10) as u8)).collect();
        let grouped = group_digits(&digits);
        assert_eq!(grouped.lines().count(), 2);
        assert_eq!(
            grouped.lines().next(),
            Some("01234 56789 01234 56789 01234 56789")
        );
    }
}
