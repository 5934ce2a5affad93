//! Channel binding for device authentication.

use tern_protocol::limits::{AUTH_EXPORTER_LABEL, AUTH_EXPORTER_LEN};

/// The TLS exporter value of `conn` that device authentication signs over
/// (label `EXPORTER-tern-auth-v1`, empty context, 32 bytes). Both ends of a
/// connection compute the same value; no other connection has it.
pub fn auth_exporter(
    conn: &quinn::Connection,
) -> Result<[u8; AUTH_EXPORTER_LEN], quinn::crypto::ExportKeyingMaterialError> {
    let mut out = [0u8; AUTH_EXPORTER_LEN];
    conn.export_keying_material(&mut out, AUTH_EXPORTER_LABEL, b"")?;
    Ok(out)
}
