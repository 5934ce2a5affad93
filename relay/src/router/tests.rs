//! Router tests: fan-out, mailbox bounds (items, bytes, the relay-wide
//! budget) and what a queued view holds.

use super::*;

fn entry(seq: u64, sender: DeviceAddr, recipients: Vec<UserId>) -> Arc<CommittedEntry> {
    let ct = |d: DeviceAddr, b: u8| DeviceCiphertext {
        user_id: d.user.to_wire(),
        device_id: d.device,
        ciphertext: Bytes::from(vec![b]),
    };
    Arc::new(CommittedEntry {
        chat_id: ChatId([9; 16]),
        seq,
        kind: EntryKind::Message,
        sender,
        server_time_ms: 1,
        client_message_id: Some(ClientMessageId([seq as u8; 16])),
        device_ciphertexts: vec![
            ct(DeviceAddr::test(2, 1), 21),
            ct(DeviceAddr::test(2, 2), 22),
            ct(DeviceAddr::test(1, 2), 12),
        ],
        common_ciphertext: Bytes::new(),
        added: vec![],
        removed: vec![],
        promoted: vec![],
        recipients,
        committed_at: std::time::Instant::now(),
        shared_frame: std::sync::OnceLock::new(),
    })
}

#[test]
fn each_device_gets_only_its_ciphertext_and_sender_gets_nothing() {
    let router = Router::new(usize::MAX);
    let (_s, mut sender_rx, _) = router.register(DeviceAddr::test(1, 1), 8, usize::MAX);
    let (_o, mut own_rx, _) = router.register(DeviceAddr::test(1, 2), 8, usize::MAX);
    let (_a, mut a_rx, _) = router.register(DeviceAddr::test(2, 1), 8, usize::MAX);
    let (_b, mut b_rx, _) = router.register(DeviceAddr::test(2, 2), 8, usize::MAX);
    let e = entry(
        1,
        DeviceAddr::test(1, 1),
        vec![UserId([1; 16]), UserId([2; 16])],
    );
    assert_eq!(router.fan_out(&[e]), 3);
    assert!(sender_rx.try_recv().is_err());
    for (rx, d, want) in [
        (&mut own_rx, DeviceAddr::test(1, 2), 12u8),
        (&mut a_rx, DeviceAddr::test(2, 1), 21),
        (&mut b_rx, DeviceAddr::test(2, 2), 22),
    ] {
        let Ok(Outbound::Entries(got)) = rx.try_recv() else {
            panic!("no entry")
        };
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].delivery_for(d).ciphertext[..], [want]);
    }
}

fn seqs(out: Outbound) -> Vec<u64> {
    match out {
        Outbound::Entries(e) => e.iter().map(|e| e.seq).collect(),
        Outbound::Event(_) | Outbound::Ephemeral(_) => Vec::new(),
    }
}

#[test]
fn full_mailbox_lags_and_drops_until_cleared() {
    let router = Router::new(usize::MAX);
    let (mb, mut rx, _) = router.register(DeviceAddr::test(2, 1), 2, usize::MAX);
    let recipients = vec![UserId([2; 16])];
    for seq in 1..=5 {
        router.fan_out(&[entry(seq, DeviceAddr::test(1, 1), recipients.clone())]);
    }
    assert!(mb.is_lagging());
    let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
        .inspect(|o| mb.taken(o))
        .flat_map(seqs)
        .collect();
    assert_eq!(got, vec![1, 2]);
    mb.clear_lagging();
    router.fan_out(&[entry(6, DeviceAddr::test(1, 1), recipients)]);
    assert_eq!(rx.try_recv().map(seqs).ok(), Some(vec![6]));
}

#[test]
fn a_commit_reaches_each_mailbox_as_one_batch_counted_per_entry() {
    let router = Router::new(usize::MAX);
    let (mb, mut rx, _) = router.register(DeviceAddr::test(2, 1), 3, usize::MAX);
    let to = vec![UserId([2; 16])];
    let commit: Vec<_> = (1..=3)
        .map(|s| entry(s, DeviceAddr::test(1, 1), to.clone()))
        .collect();
    assert_eq!(router.fan_out(&commit), 3);
    let batch = rx.try_recv().unwrap();
    assert_eq!(seqs(batch.clone()), vec![1, 2, 3]);
    assert!(rx.try_recv().is_err(), "one batch, not three items");
    // The batch fills the capacity of 3 until it is taken.
    assert_eq!(
        router.fan_out(&[entry(4, DeviceAddr::test(1, 1), to.clone())]),
        0
    );
    assert!(mb.is_lagging());
    assert_eq!(router.queued_total(), 3);
    mb.taken(&batch);
    assert_eq!(router.queued_total(), 0);
    mb.clear_lagging();
    assert_eq!(router.fan_out(&[entry(5, DeviceAddr::test(1, 1), to)]), 1);
}

#[test]
fn unregister_removes_only_that_connection() {
    let router = Router::new(usize::MAX);
    let (first, _rx1, came_online) = router.register(DeviceAddr::test(1, 1), 1, usize::MAX);
    assert!(came_online);
    let (second, _rx2, again) = router.register(DeviceAddr::test(1, 1), 1, usize::MAX);
    assert!(!again);
    assert!(!router.unregister(&first));
    assert!(router.is_online(&UserId([1; 16])));
    assert_eq!(router.connection_count(), 1);
    assert!(router.unregister(&second), "the last device went offline");
}

/// An entry to `to` with a ciphertext of `len` bytes for each listed device.
fn sized_entry(seq: u64, to: &[DeviceAddr], len: usize) -> Arc<CommittedEntry> {
    let sender = DeviceAddr::test(1, 1);
    let mut recipients: Vec<UserId> = to.iter().map(|d| d.user).collect();
    recipients.dedup();
    Arc::new(CommittedEntry {
        chat_id: ChatId([9; 16]),
        seq,
        kind: EntryKind::Message,
        sender,
        server_time_ms: 1,
        client_message_id: Some(ClientMessageId([seq as u8; 16])),
        device_ciphertexts: to
            .iter()
            .map(|d| DeviceCiphertext {
                user_id: d.user.to_wire(),
                device_id: d.device,
                ciphertext: Bytes::from(vec![7; len]),
            })
            .collect(),
        common_ciphertext: Bytes::new(),
        added: vec![],
        removed: vec![],
        promoted: vec![],
        recipients,
        committed_at: std::time::Instant::now(),
        shared_frame: std::sync::OnceLock::new(),
    })
}

#[test]
fn a_queued_view_holds_only_its_devices_bytes_and_not_the_request() {
    let router = Router::new(usize::MAX);
    let slow = DeviceAddr::test(2, 1);
    let (_m, mut rx, _) = router.register(slow, 8, usize::MAX);
    let entry = sized_entry(1, &[slow, DeviceAddr::test(3, 1)], 1000);
    router.fan_out(std::slice::from_ref(&entry));
    // The mailbox does not keep the committed entry (and with it every
    // recipient's ciphertext) alive.
    assert_eq!(Arc::strong_count(&entry), 1);
    let Ok(Outbound::Entries(views)) = rx.try_recv() else {
        panic!("no entry")
    };
    let view = &views[0];
    assert_eq!(view.device_ciphertexts.len(), 1);
    assert_eq!(view.device_ciphertexts[0].device_id, 1);
    let copied = view.device_ciphertexts[0].ciphertext.as_ptr();
    assert!(
        entry
            .device_ciphertexts
            .iter()
            .all(|dc| dc.ciphertext.as_ptr() != copied),
        "the view's ciphertext is a copy"
    );
    assert_eq!(view.delivery_for(slow).ciphertext.len(), 1000);
}

#[test]
fn a_mailbox_over_its_byte_capacity_lags() {
    let router = Router::new(usize::MAX);
    let slow = DeviceAddr::test(2, 1);
    let (mailbox, _rx, _) = router.register(slow, 1024, 3 * 1024);
    let mut accepted = 0;
    for seq in 1..=10 {
        accepted += router.fan_out(&[sized_entry(seq, &[slow], 1000)]);
    }
    assert_eq!(accepted, 2, "1,256 bytes counted per entry, 3 KiB allowed");
    assert!(mailbox.is_lagging());
}

#[test]
fn the_relay_wide_budget_bounds_all_mailboxes_together() {
    let router = Router::new(5 * 1024);
    let (a, b) = (DeviceAddr::test(2, 1), DeviceAddr::test(3, 1));
    let (first, mut first_rx, _) = router.register(a, 1024, usize::MAX);
    let (second, _second_rx, _) = router.register(b, 1024, usize::MAX);
    let mut accepted = 0;
    for seq in 1..=10 {
        accepted += router.fan_out(&[sized_entry(seq, &[a, b], 1000)]);
    }
    assert_eq!(accepted, 4, "four entries of 1,256 bytes fit in 5 KiB");
    assert!(first.is_lagging() && second.is_lagging());
    // Taking an item gives its bytes back to the budget.
    let taken = first_rx.try_recv().unwrap();
    first.taken(&taken);
    first.clear_lagging();
    assert_eq!(router.fan_out(&[sized_entry(11, &[a], 1000)]), 1);
}
