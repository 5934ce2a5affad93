//! Property tests: every message type survives encode → frame → decode
//! unchanged, however the byte stream is split.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use tern_protocol::limits::*;
use tern_protocol::wire::*;
use tern_protocol::{FrameDecoder, decode_client_frame, decode_server_frame, encode_frame};

fn fixed(len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), len).prop_map(Bytes::from)
}

fn up_to(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn some_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 1..=max).prop_map(Bytes::from)
}

fn user_id() -> impl Strategy<Value = Bytes> {
    fixed(USER_ID_LEN)
}

fn chat_id() -> impl Strategy<Value = Bytes> {
    fixed(CHAT_ID_LEN)
}

fn user_name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,32}"
}

fn signed_device_list() -> impl Strategy<Value = SignedDeviceList> {
    (some_bytes(200), fixed(SIGNATURE_LEN)).prop_map(|(device_list, signature)| SignedDeviceList {
        device_list,
        signature,
    })
}

fn signed_prekey() -> impl Strategy<Value = SignedPrekey> {
    (any::<u32>(), fixed(KEY_LEN), fixed(SIGNATURE_LEN)).prop_map(|(id, public_key, signature)| {
        SignedPrekey {
            id,
            public_key,
            signature,
        }
    })
}

fn one_time_prekey() -> impl Strategy<Value = OneTimePrekey> {
    (any::<u32>(), fixed(KEY_LEN)).prop_map(|(id, public_key)| OneTimePrekey { id, public_key })
}

fn kem_prekey() -> impl Strategy<Value = KemPrekey> {
    (
        any::<u32>(),
        fixed(KEM_PUBLIC_KEY_LEN),
        fixed(SIGNATURE_LEN),
    )
        .prop_map(|(id, public_key, signature)| KemPrekey {
            id,
            public_key,
            signature,
        })
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (chat_id(), any::<u64>()).prop_map(|(chat_id, seq)| Cursor { chat_id, seq })
}

fn blob_chunk() -> impl Strategy<Value = BlobChunk> {
    (any::<u64>(), up_to(512)).prop_map(|(offset, data)| BlobChunk { offset, data })
}

fn ephemeral() -> impl Strategy<Value = EphemeralEvent> {
    use ephemeral_event::Kind;
    prop_oneof![
        (chat_id(), any::<bool>(), user_id(), any::<u32>()).prop_map(
            |(chat_id, active, user_id, device_id)| Kind::Typing(Typing {
                chat_id,
                active,
                user_id,
                device_id,
            })
        ),
        (user_id(), any::<bool>(), any::<u64>()).prop_map(|(user_id, online, last_seen_ms)| {
            Kind::Presence(Presence {
                user_id,
                online,
                last_seen_ms,
            })
        }),
    ]
    .prop_map(|kind| EphemeralEvent { kind: Some(kind) })
}

fn request() -> impl Strategy<Value = request::Kind> {
    use request::Kind;
    let accounts = prop_oneof![
        (
            user_name(),
            fixed(KEY_LEN),
            signed_device_list(),
            any::<u32>(),
            "[a-zA-Z0-9]{0,40}",
            fixed(SIGNATURE_LEN)
        )
            .prop_map(
                |(user_name, account_key, list, device_id, invite_token, sig)| {
                    Kind::RegisterAccount(RegisterAccount {
                        user_name,
                        account_key,
                        device_list: Some(list),
                        device_id,
                        invite_token,
                        device_signature: sig,
                    })
                }
            ),
        (user_id(), any::<u32>(), fixed(SIGNATURE_LEN)).prop_map(
            |(user_id, device_id, device_signature)| Kind::RegisterDevice(RegisterDevice {
                user_id,
                device_id,
                device_signature,
            })
        ),
        signed_device_list().prop_map(|l| Kind::PublishDeviceList(PublishDeviceList {
            device_list: Some(l)
        })),
        (any::<u32>(), signed_device_list()).prop_map(|(device_id, l)| Kind::RemoveDevice(
            RemoveDevice {
                device_id,
                device_list: Some(l),
            }
        )),
        user_name().prop_map(|user_name| Kind::LookupUser(LookupUser {
            user_name,
            user_id: Bytes::new(),
        })),
        user_id().prop_map(|user_id| Kind::LookupUser(LookupUser {
            user_name: String::new(),
            user_id,
        })),
    ];
    let prekeys = prop_oneof![
        (
            proptest::option::of(signed_prekey()),
            vec(one_time_prekey(), 0..5),
            proptest::option::of(kem_prekey()),
            vec(kem_prekey(), 0..2)
        )
            .prop_map(|(signed_prekey, otks, last_resort, kems)| {
                Kind::UploadPrekeys(UploadPrekeys {
                    signed_prekey,
                    one_time_prekeys: otks,
                    last_resort_kem_prekey: last_resort,
                    one_time_kem_prekeys: kems,
                })
            }),
        (user_id(), vec(any::<u32>(), 0..MAX_DEVICES_PER_USER)).prop_map(
            |(user_id, device_ids)| Kind::FetchBundles(FetchBundles {
                user_id,
                device_ids
            })
        ),
    ];
    let chats = prop_oneof![
        (chat_id(), vec(user_id(), 0..10)).prop_map(|(chat_id, members)| Kind::CreateChat(
            CreateChat {
                chat_id,
                kind: ChatKind::Group as i32,
                members,
            }
        )),
        (chat_id(), user_id()).prop_map(|(chat_id, member)| Kind::CreateChat(CreateChat {
            chat_id,
            kind: ChatKind::Direct as i32,
            members: vec![member],
        })),
        (
            chat_id(),
            vec(user_id(), 1..5),
            vec(user_id(), 0..5),
            vec(user_id(), 0..3)
        )
            .prop_map(|(chat_id, add, remove, promote)| Kind::ChangeMembers(
                ChangeMembers {
                    chat_id,
                    add,
                    remove,
                    promote,
                }
            )),
        chat_id().prop_map(|chat_id| Kind::GetChat(GetChat { chat_id })),
        Just(Kind::ListChats(ListChats {})),
    ];
    let messaging = prop_oneof![
        (
            chat_id(),
            fixed(CLIENT_MESSAGE_ID_LEN),
            vec(
                (user_id(), any::<u32>(), some_bytes(300)).prop_map(
                    |(user_id, device_id, ciphertext)| DeviceCiphertext {
                        user_id,
                        device_id,
                        ciphertext,
                    }
                ),
                1..8
            ),
            up_to(300)
        )
            .prop_map(|(chat_id, client_message_id, device_ciphertexts, common)| {
                Kind::Send(Send {
                    chat_id,
                    client_message_id,
                    device_ciphertexts,
                    common_ciphertext: common,
                })
            }),
        vec(cursor(), 0..10).prop_map(|cursors| Kind::AckDelivered(AckDelivered { cursors })),
        (vec(cursor(), 0..10), any::<u32>())
            .prop_map(|(after, limit)| Kind::Sync(Sync { after, limit })),
        vec(user_id(), 0..10)
            .prop_map(|user_ids| Kind::SubscribePresence(SubscribePresence { user_ids })),
    ];
    let other = prop_oneof![
        (fixed(BLOB_ID_LEN), 1..=MAX_BLOB_LEN)
            .prop_map(|(sha256, size)| { Kind::BlobUploadStart(BlobUploadStart { sha256, size }) }),
        (fixed(BLOB_ID_LEN), any::<u64>())
            .prop_map(|(blob_id, offset)| Kind::BlobDownload(BlobDownload { blob_id, offset })),
        "(https?://[a-z.]{1,30}/[a-z0-9]{0,20})?"
            .prop_map(|url| Kind::SetPushEndpoint(SetPushEndpoint { url })),
        Just(Kind::ProvisioningOpen(ProvisioningOpen {})),
        (fixed(PROVISIONING_ADDRESS_LEN), some_bytes(500)).prop_map(|(address, ciphertext)| {
            Kind::ProvisioningSend(ProvisioningSend {
                address,
                ciphertext,
            })
        }),
    ];
    prop_oneof![accounts, prekeys, chats, messaging, other]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    use client_frame::Body;
    prop_oneof![
        (any::<u32>(), "[ -~]{0,64}").prop_map(|(protocol_version, client_agent)| {
            Body::Hello(ClientHello {
                protocol_version,
                client_agent,
            })
        }),
        (user_id(), any::<u32>(), fixed(SIGNATURE_LEN)).prop_map(
            |(user_id, device_id, signature)| Body::Authenticate(Authenticate {
                user_id,
                device_id,
                signature,
            })
        ),
        (request(), any::<u64>()).prop_map(|(kind, request_id)| Body::Request(Request {
            kind: Some(kind),
            request_id,
        })),
        ephemeral().prop_map(Body::Ephemeral),
        blob_chunk().prop_map(Body::BlobChunk),
    ]
    .prop_map(|body| ClientFrame { body: Some(body) })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    (
        (chat_id(), any::<u64>(), 0..3i32, user_id(), any::<u32>()),
        (
            any::<u64>(),
            fixed(CLIENT_MESSAGE_ID_LEN),
            up_to(200),
            up_to(200),
        ),
        (
            vec(user_id(), 0..3),
            vec(user_id(), 0..3),
            vec(user_id(), 0..3),
        ),
    )
        .prop_map(
            |(
                (chat_id, seq, kind, sender_user_id, sender_device_id),
                (server_time_ms, client_message_id, ciphertext, common_ciphertext),
                (added, removed, promoted),
            )| Delivery {
                chat_id,
                seq,
                kind,
                sender_user_id,
                sender_device_id,
                server_time_ms,
                client_message_id,
                ciphertext,
                common_ciphertext,
                added,
                removed,
                promoted,
            },
        )
}

fn chat_info() -> impl Strategy<Value = ChatInfo> {
    (
        chat_id(),
        0..3i32,
        vec(user_id(), 0..5),
        any::<u64>(),
        vec(user_id(), 0..3),
    )
        .prop_map(|(chat_id, kind, members, last_seq, admins)| ChatInfo {
            chat_id,
            kind,
            members,
            last_seq,
            admins,
        })
}

fn device_address() -> impl Strategy<Value = DeviceAddress> {
    (user_id(), any::<u32>()).prop_map(|(user_id, device_id)| DeviceAddress { user_id, device_id })
}

fn response() -> impl Strategy<Value = response::Kind> {
    use response::Kind;
    let simple = prop_oneof![
        (
            0..14i32,
            "[ -~]{0,100}",
            any::<u64>(),
            vec(device_address(), 0..4),
            vec(device_address(), 0..4)
        )
            .prop_map(|(code, message, retry_after_ms, missing, extra)| {
                Kind::Error(Error {
                    code,
                    message,
                    retry_after_ms,
                    mismatched_devices: Some(MismatchedDevices { missing, extra }),
                })
            }),
        Just(Kind::Ok(Empty {})),
        user_id().prop_map(|user_id| Kind::Registered(Registered { user_id })),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Kind::PrekeyStock(PrekeyStock {
            one_time_prekeys: a,
            one_time_kem_prekeys: b,
        })),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(seq, server_time_ms, duplicate)| {
            Kind::SendAck(SendAck {
                seq,
                server_time_ms,
                duplicate,
            })
        }),
    ];
    let directory = prop_oneof![
        (user_id(), user_name(), fixed(KEY_LEN), signed_device_list()).prop_map(
            |(user_id, user_name, account_key, list)| Kind::UserInfo(UserInfo {
                user_id,
                user_name,
                account_key,
                device_list: Some(list),
            })
        ),
        (
            fixed(KEY_LEN),
            signed_device_list(),
            vec(
                (
                    any::<u32>(),
                    fixed(KEY_LEN),
                    signed_prekey(),
                    proptest::option::of(one_time_prekey()),
                    kem_prekey(),
                    any::<bool>()
                ),
                0..3
            )
        )
            .prop_map(|(account_key, list, bundles)| {
                Kind::Bundles(Bundles {
                    account_key,
                    device_list: Some(list),
                    bundles: bundles
                        .into_iter()
                        .map(
                            |(device_id, identity_key, spk, otk, kem, last)| PrekeyBundle {
                                device_id,
                                identity_key,
                                signed_prekey: Some(spk),
                                one_time_prekey: otk,
                                kem_prekey: Some(kem),
                                kem_prekey_is_last_resort: last,
                            },
                        )
                        .collect(),
                })
            }),
        chat_info().prop_map(Kind::ChatInfo),
        vec(chat_info(), 0..4).prop_map(|chats| Kind::ChatList(ChatList { chats })),
    ];
    let data = prop_oneof![
        (vec(delivery(), 0..4), any::<bool>())
            .prop_map(|(entries, more)| Kind::SyncBatch(SyncBatch { entries, more })),
        (fixed(BLOB_ID_LEN), any::<u64>(), any::<bool>()).prop_map(
            |(blob_id, received, complete)| Kind::BlobUploadStatus(BlobUploadStatus {
                blob_id,
                received,
                complete,
            })
        ),
        (fixed(BLOB_ID_LEN), any::<u64>())
            .prop_map(|(blob_id, size)| Kind::BlobInfo(BlobInfo { blob_id, size })),
        fixed(PROVISIONING_ADDRESS_LEN)
            .prop_map(|address| Kind::ProvisioningAddress(ProvisioningAddress { address })),
    ];
    prop_oneof![simple, directory, data]
}

fn event() -> impl Strategy<Value = event::Kind> {
    use event::Kind;
    prop_oneof![
        delivery().prop_map(Kind::Delivery),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Kind::PrekeysLow(PrekeyStock {
            one_time_prekeys: a,
            one_time_kem_prekeys: b,
        })),
        (user_id(), any::<u64>()).prop_map(|(user_id, version)| Kind::DeviceListChanged(
            DeviceListChanged { user_id, version }
        )),
        Just(Kind::SyncNeeded(SyncNeeded {})),
        (fixed(PROVISIONING_ADDRESS_LEN), up_to(300)).prop_map(|(address, ciphertext)| {
            Kind::ProvisioningMessage(ProvisioningMessage {
                address,
                ciphertext,
            })
        }),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    use server_frame::Body;
    prop_oneof![
        (
            any::<u32>(),
            fixed(CHALLENGE_LEN),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(
                |(protocol_version, challenge, server_time_ms, max_pipelined_requests)| {
                    Body::Hello(ServerHello {
                        protocol_version,
                        challenge,
                        server_time_ms,
                        max_pipelined_requests,
                    })
                }
            ),
        (any::<u64>(), any::<bool>()).prop_map(|(server_time_ms, prekeys_low)| {
            Body::AuthOk(AuthOk {
                server_time_ms,
                prekeys_low,
            })
        }),
        (response(), any::<u64>()).prop_map(|(kind, request_id)| Body::Response(Response {
            kind: Some(kind),
            request_id,
        })),
        event().prop_map(|kind| Body::Event(Event { kind: Some(kind) })),
        ephemeral().prop_map(Body::Ephemeral),
        blob_chunk().prop_map(Body::BlobChunk),
    ]
    .prop_map(|body| ServerFrame { body: Some(body) })
}

/// Feeds `stream` to a decoder in pieces of `chunk` bytes and collects bodies.
fn split_frames(stream: &[u8], chunk: usize) -> Vec<Bytes> {
    let mut decoder = FrameDecoder::new();
    let mut bodies = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        decoder.push(piece);
        while let Some(body) = decoder.next_frame().unwrap() {
            bodies.push(body);
        }
    }
    decoder.finish().unwrap();
    bodies
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn client_frames_round_trip(frames in vec(client_frame(), 1..4), chunk in 1usize..4096) {
        let stream: Vec<u8> = frames
            .iter()
            .flat_map(|f| encode_frame(f).unwrap())
            .collect();
        let decoded: Vec<ClientFrame> = split_frames(&stream, chunk)
            .into_iter()
            .map(|body| decode_client_frame(body).unwrap())
            .collect();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn server_frames_round_trip(frames in vec(server_frame(), 1..4), chunk in 1usize..4096) {
        let stream: Vec<u8> = frames
            .iter()
            .flat_map(|f| encode_frame(f).unwrap())
            .collect();
        let decoded: Vec<ServerFrame> = split_frames(&stream, chunk)
            .into_iter()
            .map(|body| decode_server_frame(body).unwrap())
            .collect();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn datagrams_round_trip(event in ephemeral()) {
        use prost::Message;
        let bytes = Bytes::from(event.encode_to_vec());
        prop_assert_eq!(tern_protocol::decode_datagram(bytes).unwrap(), event);
    }

    #[test]
    fn random_bytes_never_panic(data in vec(any::<u8>(), 0..2048)) {
        let body = Bytes::from(data.clone());
        let _ = decode_client_frame(body.clone());
        let _ = decode_server_frame(body.clone());
        let _ = tern_protocol::decode_datagram(body);
        let mut decoder = FrameDecoder::new();
        decoder.push(&data);
        while let Ok(Some(_)) = decoder.next_frame() {}
    }
}
