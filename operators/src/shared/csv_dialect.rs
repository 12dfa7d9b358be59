//! The CSV layout `fetch.csv` and `sink.csv` share: the field separator's
//! check and the defaults of their `delimiter` and `has_header` parameters.

use crate::ParamError;

/// The default `delimiter`: a comma.
pub(crate) fn default_delimiter() -> char {
    ','
}

/// The default `has_header`: a first line with the column names.
pub(crate) fn default_has_header() -> bool {
    true
}

/// The `delimiter` parameter as the byte the Arrow CSV reader and writer
/// take, or an error if it cannot separate fields.
pub(crate) fn delimiter_byte(delimiter: char) -> Result<u8, ParamError> {
    match u8::try_from(delimiter) {
        Ok(b) if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => Ok(b),
        _ => Err(ParamError::new(
            &["delimiter"],
            format!(
                "delimiter {delimiter:?} cannot separate fields; use one ASCII character \
                 other than a quote or a line break, e.g. `delimiter: \";\"`"
            ),
        )),
    }
}
