//! Hostile and malformed input is rejected with the right typed error.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use tern_protocol::limits::*;
use tern_protocol::wire::*;
use tern_protocol::{
    FrameDecoder, ProtocolError, decode_client_frame, decode_datagram, decode_device_list,
    encode_frame, expect_hello,
};

fn request_frame(kind: request::Kind) -> Bytes {
    ClientFrame {
        body: Some(client_frame::Body::Request(Request {
            kind: Some(kind),
            request_id: 0,
        })),
    }
    .encode_to_vec()
    .into()
}

fn send(device_ciphertexts: Vec<DeviceCiphertext>, common: &[u8]) -> request::Kind {
    request::Kind::Send(Send {
        chat_id: Bytes::from_static(&[1; CHAT_ID_LEN]),
        client_message_id: Bytes::from_static(&[2; CLIENT_MESSAGE_ID_LEN]),
        device_ciphertexts,
        common_ciphertext: Bytes::copy_from_slice(common),
    })
}

fn ciphertext_for(device_id: u32, len: usize) -> DeviceCiphertext {
    DeviceCiphertext {
        user_id: Bytes::from_static(&[3; USER_ID_LEN]),
        device_id,
        ciphertext: Bytes::from(vec![7; len]),
    }
}

fn hello(version: u32) -> Bytes {
    ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello {
            protocol_version: version,
            client_agent: "test".into(),
        })),
    }
    .encode_to_vec()
    .into()
}

#[test]
fn truncated_frame_is_reported_with_missing_bytes() {
    let frame = encode_frame(&ClientFrame {
        body: Some(client_frame::Body::Hello(ClientHello::default())),
    })
    .unwrap();
    let mut decoder = FrameDecoder::new();
    decoder.push(&frame[..frame.len() - 1]);
    assert_eq!(decoder.next_frame(), Ok(None));
    assert_eq!(
        decoder.finish(),
        Err(ProtocolError::Truncated { missing: 1 })
    );

    let mut header_only = FrameDecoder::new();
    header_only.push(&[0, 0]);
    assert_eq!(
        header_only.finish(),
        Err(ProtocolError::Truncated { missing: 2 })
    );
}

#[test]
fn oversized_frame_is_rejected_from_its_header() {
    let mut decoder = FrameDecoder::new();
    decoder.push(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
    assert_eq!(
        decoder.next_frame(),
        Err(ProtocolError::FrameTooLarge {
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    let mut exact = FrameDecoder::new();
    exact.push(&(MAX_FRAME_LEN as u32).to_be_bytes());
    assert_eq!(exact.next_frame(), Ok(None), "the limit itself is allowed");
}

#[test]
fn encoder_refuses_frames_the_peer_would_reject() {
    let too_big = ClientFrame {
        body: Some(client_frame::Body::BlobChunk(BlobChunk {
            offset: 0,
            data: Bytes::from(vec![0; MAX_FRAME_LEN]),
        })),
    };
    assert!(matches!(
        encode_frame(&too_big),
        Err(ProtocolError::FrameTooLarge {
            max: MAX_FRAME_LEN,
            ..
        })
    ));
}

#[test]
fn oversized_body_is_rejected_before_decoding() {
    let body = Bytes::from(vec![0u8; MAX_FRAME_LEN + 1]);
    assert!(matches!(
        decode_client_frame(body),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    let datagram = Bytes::from(vec![0u8; MAX_DATAGRAM_LEN + 1]);
    assert!(matches!(
        decode_datagram(datagram),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
}

#[test]
fn wrong_version_and_wrong_first_frame() {
    assert_eq!(
        expect_hello(hello(PROTOCOL_VERSION)).unwrap().client_agent,
        "test"
    );
    assert_eq!(
        expect_hello(hello(2)),
        Err(ProtocolError::UnsupportedVersion {
            got: 2,
            supported: PROTOCOL_VERSION
        })
    );
    assert_eq!(
        expect_hello(request_frame(request::Kind::ListChats(ListChats {}))),
        Err(ProtocolError::Unexpected {
            expected: "ClientHello"
        })
    );
    assert_eq!(
        ProtocolError::UnsupportedVersion {
            got: 2,
            supported: 1
        }
        .error_code(),
        ErrorCode::UnsupportedVersion
    );
}

#[test]
fn malformed_protobuf_is_a_typed_error() {
    // Field 1, length-delimited, announcing 127 bytes that are not there.
    let body = Bytes::from_static(&[0x0a, 0x7f, 0x01]);
    let err = decode_client_frame(body).unwrap_err();
    assert!(matches!(err, ProtocolError::Malformed(_)), "{err:?}");
    assert_eq!(err.error_code(), ErrorCode::BadRequest);
}

#[test]
fn empty_or_unknown_body_is_missing_field() {
    assert_eq!(
        decode_client_frame(Bytes::new()),
        Err(ProtocolError::MissingField("ClientFrame.body"))
    );
    // A oneof variant from a newer peer (field 99) decodes as "no body".
    let mut buf = BytesMut::new();
    prost::encoding::bytes::encode(99, &Bytes::from_static(b"future"), &mut buf);
    assert_eq!(
        decode_client_frame(buf.freeze()),
        Err(ProtocolError::MissingField("ClientFrame.body"))
    );
}

#[test]
fn unknown_fields_from_a_newer_peer_are_ignored() {
    let mut buf = BytesMut::from(&hello(PROTOCOL_VERSION)[..]);
    // Field 1 (hello) again, carrying an unknown field 50 inside: protobuf
    // merges repeated occurrences of a message field.
    let mut inner = BytesMut::new();
    prost::encoding::uint64::encode(50, &12345, &mut inner);
    buf.put_u8(0x0a);
    buf.put_u8(inner.len() as u8);
    buf.extend_from_slice(&inner);
    let hello = expect_hello(buf.freeze()).unwrap();
    assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
    assert_eq!(hello.client_agent, "test");
}

#[test]
fn fixed_size_fields_are_checked() {
    let mut kind = send(vec![ciphertext_for(1, 10)], b"");
    if let request::Kind::Send(s) = &mut kind {
        s.chat_id = Bytes::from_static(&[1; 15]);
    }
    assert_eq!(
        decode_client_frame(request_frame(kind)),
        Err(ProtocolError::BadLength {
            field: "Send.chat_id",
            len: 15,
            expected: CHAT_ID_LEN
        })
    );
}

#[test]
fn send_limits_are_enforced() {
    let ok = send(vec![ciphertext_for(1, MAX_CIPHERTEXT_LEN)], b"");
    assert!(decode_client_frame(request_frame(ok)).is_ok());

    let too_long = send(vec![ciphertext_for(1, MAX_CIPHERTEXT_LEN + 1)], b"");
    assert_eq!(
        decode_client_frame(request_frame(too_long)),
        Err(ProtocolError::TooLong {
            field: "DeviceCiphertext.ciphertext",
            len: MAX_CIPHERTEXT_LEN + 1,
            max: MAX_CIPHERTEXT_LEN
        })
    );

    let many: Vec<_> = (0..=MAX_RECIPIENT_DEVICES as u32)
        .map(|d| ciphertext_for(d, 1))
        .collect();
    assert_eq!(
        decode_client_frame(request_frame(send(many, b""))),
        Err(ProtocolError::TooMany {
            field: "Send.device_ciphertexts",
            count: MAX_RECIPIENT_DEVICES + 1,
            max: MAX_RECIPIENT_DEVICES
        })
    );

    assert_eq!(
        decode_client_frame(request_frame(send(vec![], b""))),
        Err(ProtocolError::Invalid {
            field: "Send",
            reason: "carries no ciphertext"
        })
    );
}

#[test]
fn prekey_upload_limit_is_enforced() {
    let key = OneTimePrekey {
        id: 1,
        public_key: Bytes::from_static(&[9; KEY_LEN]),
    };
    let upload = request::Kind::UploadPrekeys(UploadPrekeys {
        one_time_prekeys: vec![key; MAX_PREKEYS_PER_UPLOAD + 1],
        ..Default::default()
    });
    assert!(matches!(
        decode_client_frame(request_frame(upload)),
        Err(ProtocolError::TooMany {
            field: "UploadPrekeys.one_time_prekeys",
            ..
        })
    ));
}

#[test]
fn user_names_are_restricted() {
    for bad in ["", "Alice", "a b", "ü", &"a".repeat(MAX_USER_NAME_LEN + 1)] {
        let lookup = request::Kind::LookupUser(LookupUser {
            user_name: bad.to_string(),
            user_id: Bytes::new(),
        });
        assert!(
            decode_client_frame(request_frame(lookup)).is_err(),
            "{bad:?} accepted"
        );
    }
    let both = request::Kind::LookupUser(LookupUser {
        user_name: "alice".into(),
        user_id: Bytes::from_static(&[1; USER_ID_LEN]),
    });
    assert!(matches!(
        decode_client_frame(request_frame(both)),
        Err(ProtocolError::Invalid {
            field: "LookupUser",
            ..
        })
    ));
}

#[test]
fn direct_chats_have_exactly_one_other_member() {
    let chat = |members: usize, kind: i32| {
        request_frame(request::Kind::CreateChat(CreateChat {
            chat_id: Bytes::from_static(&[1; CHAT_ID_LEN]),
            kind,
            members: vec![Bytes::from_static(&[2; USER_ID_LEN]); members],
        }))
    };
    assert!(decode_client_frame(chat(1, ChatKind::Direct as i32)).is_ok());
    assert!(decode_client_frame(chat(2, ChatKind::Direct as i32)).is_err());
    assert!(decode_client_frame(chat(2, ChatKind::Group as i32)).is_ok());
    assert!(matches!(
        decode_client_frame(chat(1, 7)),
        Err(ProtocolError::Invalid {
            field: "CreateChat.kind",
            ..
        })
    ));
}

#[test]
fn device_lists_are_validated() {
    let entry = |device_id| DeviceEntry {
        device_id,
        identity_key: Bytes::from_static(&[5; KEY_LEN]),
    };
    let signed = |list: DeviceList| SignedDeviceList {
        device_list: list.encode_to_vec().into(),
        signature: Bytes::from_static(&[0; SIGNATURE_LEN]),
    };
    let good = DeviceList {
        user_id: Bytes::from_static(&[1; USER_ID_LEN]),
        version: 1,
        devices: vec![entry(1), entry(2)],
    };
    assert_eq!(decode_device_list(&signed(good.clone())).unwrap(), good);

    let duplicate = DeviceList {
        devices: vec![entry(1), entry(1)],
        ..good.clone()
    };
    assert!(matches!(
        decode_device_list(&signed(duplicate)),
        Err(ProtocolError::Invalid {
            field: "DeviceList.devices",
            ..
        })
    ));
    let version_zero = DeviceList {
        version: 0,
        ..good.clone()
    };
    assert!(decode_device_list(&signed(version_zero)).is_err());
    let too_many = DeviceList {
        devices: (0..=MAX_DEVICES_PER_USER as u32).map(entry).collect(),
        ..good
    };
    assert!(decode_device_list(&signed(too_many)).is_err());
}

#[test]
fn push_urls_must_be_http() {
    let push = |url: &str| {
        request_frame(request::Kind::SetPushEndpoint(SetPushEndpoint {
            url: url.into(),
        }))
    };
    assert!(decode_client_frame(push("https://push.example/abc")).is_ok());
    assert!(decode_client_frame(push("")).is_ok());
    assert!(decode_client_frame(push("file:///etc/passwd")).is_err());
}
