//! Linking a new device through a provisioning mailbox.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tern_protocol::wire::*;
use tern_testkit::raw::*;
use tern_testkit::{Account, TestRelay, guard, random};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_device_gets_the_link_message_then_registers_on_the_same_connection() {
    let relay = TestRelay::start_with(|c| c.limits.auth_timeout_secs = 1).await;
    let at = &relay.address();
    let mut alice = Account::new("alice", 2);
    let new_device = alice.devices.pop().unwrap();
    let a1 = RawClient::register(at, &alice).await.unwrap();

    // The new device: hello, no authentication, a provisioning mailbox.
    let hello = guard(Hello::connect(&client_endpoint(&at.trust), at))
        .await
        .unwrap();
    let conn = hello.conn().clone();
    let open_req = request::Kind::ProvisioningOpen(ProvisioningOpen {});
    let bytes = tern_protocol::encode_frame(&ClientFrame::request(open_req, 0)).unwrap();
    let response::Kind::ProvisioningAddress(addr) = raw_request(&conn, &bytes).await.unwrap()
    else {
        panic!("expected an address")
    };
    // Longer than the authentication timeout: an open mailbox keeps it alive.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    a1.ok(request::Kind::ProvisioningSend(ProvisioningSend {
        address: addr.address.clone(),
        ciphertext: b"sealed link secrets".to_vec().into(),
    }))
    .await;
    let mut delivery = guard(conn.accept_uni()).await.unwrap();
    let mut decoder = tern_protocol::FrameDecoder::new();
    let Some(ServerFrame {
        body:
            Some(server_frame::Body::Event(Event {
                kind: Some(event::Kind::ProvisioningMessage(m)),
            })),
    }) = guard(read(&mut delivery, &mut decoder)).await
    else {
        panic!("expected the provisioning message")
    };
    assert_eq!(&m.ciphertext[..], b"sealed link secrets");

    // The old device publishes a list naming the new one; it registers.
    alice.devices.push(new_device);
    alice.version = 2;
    a1.ok(request::Kind::PublishDeviceList(PublishDeviceList {
        device_list: Some(alice.signed_list()),
    }))
    .await;
    let a2 = guard(hello.register_device(&alice, 2)).await.unwrap();

    // Deliveries continue on the same (single) delivery stream.
    let bob = Account::new("bob", 1);
    let b = RawClient::register(at, &bob).await.unwrap();
    let chat: [u8; 16] = random();
    b.ok(create_chat(chat, ChatKind::Direct, &[alice.user_id]))
        .await;
    let Some(ServerFrame {
        body:
            Some(server_frame::Body::Event(Event {
                kind: Some(event::Kind::Delivery(d)),
            })),
    }) = guard(read(&mut delivery, &mut decoder)).await
    else {
        panic!("expected a delivery on the same stream")
    };
    assert_eq!(d.kind, EntryKind::Membership as i32);
    drop(a2);

    let unknown = a1
        .request(request::Kind::ProvisioningSend(ProvisioningSend {
            address: vec![0; 16].into(),
            ciphertext: b"x".to_vec().into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(code(&unknown), ErrorCode::NotFound);
    relay.stop().await;
}
