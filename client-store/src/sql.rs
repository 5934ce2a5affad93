//! Small conversions between Rust values and SQLite columns.

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::StoreError;

/// Converts an unsigned counter (relay seq, byte count) to SQLite's signed
/// 64-bit integer, rejecting values above `i64::MAX`.
pub(super) fn to_i64(value: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(what))
}

/// Reads an unsigned counter column; a negative stored value is a
/// conversion error.
pub(super) fn get_u64(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Integer,
            Box::new(err),
        )
    })
}

/// Rejects a value longer than `max` bytes.
pub(super) fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), StoreError> {
    if len > max {
        return Err(StoreError::TooLarge { what, len, max });
    }
    Ok(())
}

/// Wall-clock milliseconds since the Unix epoch, for bookkeeping columns.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Declares a fieldless enum stored as an INTEGER column: it converts to its
/// discriminant and back, and an unknown stored value is a conversion error.
macro_rules! sql_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $value:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$variant_meta])* $variant = $value,)+
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(*self as i64))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                match value.as_i64()? {
                    $($value => Ok(Self::$variant),)+
                    other => Err(rusqlite::types::FromSqlError::OutOfRange(other)),
                }
            }
        }
    };
}
pub(super) use sql_enum;
