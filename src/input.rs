//! The command line and the environment as text, or one line saying which part is not.
//!
//! `std::env::args` panics on an argument that is not valid UTF-8, and `std::env::var` calls
//! such a value absent, so that a `MONGODB_URI` with one stray byte would quietly give way to
//! the default URI. mabel takes both as `OsString`s and refuses, naming the argument or the
//! variable, with the bytes that are not UTF-8 shown as `\xNN`.

use std::ffi::{OsStr, OsString};

use crate::error::Error;
use crate::wording;

/// The arguments after the program's name, as text, with the program's name first.
pub fn arguments() -> Result<Vec<String>, Error> {
    let mut args = std::env::args_os();
    let name = args.next().map_or_else(
        || "mabel".to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let mut texts = vec![name];
    for (i, arg) in args.enumerate() {
        let text = arg.into_string().map_err(|arg| {
            let shown = wording::cut(&escaped(&arg));
            Error::BadInput(format!(
                "argument {} is not valid UTF-8: \"{shown}\"",
                i + 1
            ))
        })?;
        texts.push(text);
    }
    Ok(texts)
}

/// The environment variable `name`, if it is set; an error if it is not valid UTF-8.
pub fn environment(name: &str) -> Result<Option<String>, Error> {
    std::env::var_os(name)
        .map(OsString::into_string)
        .transpose()
        .map_err(|value| {
            let shown = wording::cut(&escaped(&value));
            Error::BadInput(format!("{name} is not valid UTF-8: \"{shown}\""))
        })
}

/// The text of `value`, each byte that is not part of a UTF-8 character as `\xNN`.
fn escaped(value: &OsStr) -> String {
    let mut shown = String::new();
    for chunk in value.as_encoded_bytes().utf8_chunks() {
        shown.push_str(chunk.valid());
        for byte in chunk.invalid() {
            shown.push_str(&format!("\\x{byte:02X}"));
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn bytes_that_are_not_utf8_are_shown_escaped() {
        let value = OsStr::from_bytes(b"m\xe9bel\xff");
        assert_eq!(escaped(value), "m\\xE9bel\\xFF");
        assert_eq!(escaped(OsStr::new("Mabel")), "Mabel");
    }
}
