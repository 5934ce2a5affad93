//! Device linking input: link codes typed or scanned by the user (shown by
//! another device), a new device's request as the existing device reads it
//! from its provisioning mailbox, and the parts of the answer as the new
//! device reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::ChaCha20Rng;
use tern_crypto::identity::DeviceIdentity;
use tern_crypto::link::{LinkApplication, LinkCode, LinkInvitation};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LinkCode::parse(text);
    }
    let _ = LinkCode::from_qr(data);
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let invitation = LinkInvitation::new([1; 16], &mut rng);
    let _ = LinkInvitation::reply_address(data);
    let _ = invitation.open_request(data);
    let device = DeviceIdentity::generate(&mut rng);
    if let Ok((mut application, _)) =
        LinkApplication::new(invitation.code(), [2; 16], &device, &mut rng)
    {
        for part in data.split(|b| *b == 0xff) {
            if application.open_reply(part).is_err() {
                break;
            }
        }
    }
});
