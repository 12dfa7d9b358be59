//! Arrow and Postgres types, both ways: the columns of a table made from
//! an Arrow schema (for `CREATE TABLE` and the COPY staging table), the
//! Arrow column a query's result column becomes, and the values bound to a
//! query's `$1, $2, …`.

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use pgpq::ArrowToPostgresBinaryEncoder;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::quote_ident;
use crate::OpError;

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (Postgres's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A batch as pgpq can encode it: nanosecond timestamps become
/// microseconds (Postgres's precision) and dictionaries their values.
pub fn encodable(batch: &RecordBatch) -> Result<RecordBatch, OpError> {
    let schema = encodable_schema(&batch.schema());
    if schema.fields() == batch.schema().fields() {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// The schema of [`encodable`] batches.
pub fn encodable_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let t = match f.data_type() {
                DataType::Timestamp(TimeUnit::Nanosecond, tz) => {
                    DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
                }
                DataType::Dictionary(_, values) => values.as_ref().clone(),
                t => t.clone(),
            };
            f.as_ref().clone().with_data_type(t)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A column of a table made from an Arrow field.
#[derive(Debug, Clone, PartialEq)]
pub struct PgColumn {
    pub name: String,
    /// The type COPY's binary rows carry (`INT8`, `TIMESTAMP`, …).
    pub wire: String,
    /// The type a created table gets: the wire type, except that a
    /// timestamp with a time zone is stored as `TIMESTAMPTZ`.
    pub stored: String,
}

/// The columns for `schema` (already [`encodable_schema`]), or an error
/// naming the column whose type has no Postgres counterpart.
pub fn columns(schema: &Schema) -> Result<Vec<PgColumn>, OpError> {
    let encoder = ArrowToPostgresBinaryEncoder::try_new(schema)
        .map_err(|e| OpError::Invalid(format!("the input cannot be written to Postgres: {e}")))?;
    let pg = encoder.schema();
    Ok(pg
        .columns
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            let wire = c.data_type.name().unwrap_or_else(|| "TEXT".into());
            let stored = match f.data_type() {
                DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".to_string(),
                _ => wire.clone(),
            };
            PgColumn {
                name: f.name().clone(),
                wire,
                stored,
            }
        })
        .collect())
}

/// Whether a column of the catalog type `catalog` (`format_type`'s name,
/// `double precision`) takes COPY's binary values of the `wire` type
/// as they are. A timestamp's value is microseconds from 2000-01-01 UTC
/// either way, so both timestamp types take it.
pub fn same_type(wire: &str, catalog: &str) -> bool {
    let expected: &[&str] = match wire {
        "BOOL" => &["boolean"],
        "BYTEA" => &["bytea"],
        "INT2" => &["smallint"],
        "INT4" => &["integer"],
        "INT8" => &["bigint"],
        "FLOAT4" => &["real"],
        "FLOAT8" => &["double precision"],
        "TEXT" => &["text"],
        "JSON" => &["json"],
        "JSONB" => &["jsonb"],
        "NUMERIC" => &["numeric"],
        "DATE" => &["date"],
        "TIME" => &["time without time zone"],
        "TIMESTAMP" => &["timestamp without time zone", "timestamp with time zone"],
        "INTERVAL" => &["interval"],
        _ => &[],
    };
    expected.contains(&catalog)
}

/// `CREATE TABLE IF NOT EXISTS` for `columns`, with `key` as the primary key.
pub fn create_table(table: &str, columns: &[PgColumn], key: &[String]) -> String {
    let mut parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let not_null = if key.contains(&c.name) {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", quote_ident(&c.name), c.stored)
        })
        .collect();
    if !key.is_empty() {
        parts.push(format!("PRIMARY KEY ({})", idents(key)));
    }
    format!("CREATE TABLE IF NOT EXISTS {table} ({})", parts.join(", "))
}

/// `"a", "b"`.
pub fn idents(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote_ident(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A result column's Arrow type, or `None` when fetch.postgres cannot read
/// the Postgres type.
pub fn arrow_type(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 | Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 | Type::NUMERIC => DataType::Float64,
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::UNKNOWN
        | Type::JSON
        | Type::JSONB
        | Type::UUID => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => return None,
    })
}

/// A value as the server sent it, in binary: decoded by [`Columns`].
pub struct Raw<'a>(pub Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Builders for a result's columns, filled row by row from binary values.
pub struct Columns {
    schema: SchemaRef,
    types: Vec<Type>,
    builders: Vec<Box<dyn ArrayBuilder>>,
}

impl Columns {
    pub fn new(schema: SchemaRef, types: Vec<Type>) -> Self {
        let builders = schema
            .fields()
            .iter()
            .map(|f| builder(f.data_type()))
            .collect();
        Self {
            schema,
            types,
            builders,
        }
    }

    /// Appends one row's values, in column order.
    pub fn push(&mut self, row: &tokio_postgres::Row) -> Result<(), OpError> {
        for i in 0..self.builders.len() {
            let Raw(value) = row
                .try_get::<_, Raw>(i)
                .map_err(|e| OpError::Internal(format!("reading result column {i}: {e}")))?;
            append(&mut self.builders[i], &self.types[i], value).map_err(|e| {
                OpError::Invalid(format!(
                    "column '{}' ({}) holds a value fetch.postgres cannot read: {e}",
                    self.schema.field(i).name(),
                    self.types[i]
                ))
            })?;
        }
        Ok(())
    }

    /// The rows so far as a batch; the builders start again empty.
    pub fn finish(&mut self, rows: usize) -> Result<RecordBatch, OpError> {
        let columns: Vec<ArrayRef> = self.builders.iter_mut().map(|b| b.finish()).collect();
        if columns.is_empty() {
            let options = datafusion::arrow::record_batch::RecordBatchOptions::new()
                .with_row_count(Some(rows));
            return Ok(RecordBatch::try_new_with_options(
                self.schema.clone(),
                columns,
                &options,
            )?);
        }
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

fn builder(t: &DataType) -> Box<dyn ArrayBuilder> {
    match t {
        DataType::Boolean => Box::new(BooleanBuilder::new()),
        DataType::Int16 => Box::new(Int16Builder::new()),
        DataType::Int32 => Box::new(Int32Builder::new()),
        DataType::Int64 => Box::new(Int64Builder::new()),
        DataType::Float32 => Box::new(Float32Builder::new()),
        DataType::Float64 => Box::new(Float64Builder::new()),
        DataType::Binary => Box::new(BinaryBuilder::new()),
        DataType::Date32 => Box::new(Date32Builder::new()),
        DataType::Timestamp(_, tz) => {
            Box::new(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
        }
        _ => Box::new(StringBuilder::new()),
    }
}

type DecodeError = Box<dyn Error + Sync + Send>;

fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], DecodeError> {
    raw.try_into()
        .map_err(|_| format!("{} bytes where {N} were expected", raw.len()).into())
}

fn downcast<T: 'static>(b: &mut Box<dyn ArrayBuilder>) -> &mut T {
    b.as_any_mut()
        .downcast_mut::<T>()
        .expect("the builder was made for this column's type")
}

fn append(b: &mut Box<dyn ArrayBuilder>, t: &Type, raw: Option<&[u8]>) -> Result<(), DecodeError> {
    match *t {
        Type::BOOL => downcast::<BooleanBuilder>(b).append_option(raw.map(|r| r == [1])),
        Type::INT2 => downcast::<Int16Builder>(b)
            .append_option(raw.map(fixed::<2>).transpose()?.map(i16::from_be_bytes)),
        Type::INT4 => downcast::<Int32Builder>(b)
            .append_option(raw.map(fixed::<4>).transpose()?.map(i32::from_be_bytes)),
        Type::INT8 => downcast::<Int64Builder>(b)
            .append_option(raw.map(fixed::<8>).transpose()?.map(i64::from_be_bytes)),
        Type::OID => downcast::<Int64Builder>(b).append_option(
            raw.map(fixed::<4>)
                .transpose()?
                .map(|v| i64::from(u32::from_be_bytes(v))),
        ),
        Type::FLOAT4 => downcast::<Float32Builder>(b)
            .append_option(raw.map(fixed::<4>).transpose()?.map(f32::from_be_bytes)),
        Type::FLOAT8 => downcast::<Float64Builder>(b)
            .append_option(raw.map(fixed::<8>).transpose()?.map(f64::from_be_bytes)),
        Type::NUMERIC => downcast::<Float64Builder>(b).append_option(raw.map(numeric).transpose()?),
        Type::BYTEA => downcast::<BinaryBuilder>(b).append_option(raw),
        Type::DATE => downcast::<Date32Builder>(b).append_option(
            raw.map(fixed::<4>)
                .transpose()?
                .map(i32::from_be_bytes)
                .filter(|d| *d != i32::MAX && *d != i32::MIN)
                .map(|d| d + PG_EPOCH_DAYS),
        ),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => downcast::<TimestampMicrosecondBuilder>(b)
            .append_option(
                raw.map(fixed::<8>)
                    .transpose()?
                    .map(i64::from_be_bytes)
                    .filter(|t| *t != i64::MAX && *t != i64::MIN)
                    .map(|t| t + PG_EPOCH_MICROS),
            ),
        Type::JSONB => {
            // A version byte (1), then the text.
            let text = raw.map(|r| r.get(1..).unwrap_or_default());
            append_text(b, text)?
        }
        Type::UUID => {
            let text = raw.map(fixed::<16>).transpose()?.map(uuid_text);
            downcast::<StringBuilder>(b).append_option(text)
        }
        _ => append_text(b, raw)?,
    }
    Ok(())
}

fn append_text(b: &mut Box<dyn ArrayBuilder>, raw: Option<&[u8]>) -> Result<(), DecodeError> {
    let text = raw.map(std::str::from_utf8).transpose()?;
    downcast::<StringBuilder>(b).append_option(text);
    Ok(())
}

fn uuid_text(b: [u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A binary NUMERIC as the nearest f64: base-10000 digits with a weight
/// and a sign (NaN and the infinities included).
fn numeric(raw: &[u8]) -> Result<f64, DecodeError> {
    let word = |i: usize| -> Result<u16, DecodeError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated NUMERIC".into())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    // Summed as text and parsed, so the result is the correctly rounded
    // nearest f64, not an accumulation of rounding errors.
    let mut text = String::with_capacity(ndigits * 4 + 8);
    if sign == 0x4000 {
        text.push('-');
    }
    text.push('0');
    text.push('.');
    for i in 0..ndigits {
        text.push_str(&format!("{:04}", word(4 + i)?));
    }
    text.push_str(&format!("e{}", (weight + 1) * 4));
    Ok(text.parse::<f64>()?)
}

/// A value bound to `$n`, converted to the type the server expects there.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Text(String),
    /// Days since 2000-01-01.
    Date(i32),
    /// Microseconds since 2000-01-01 (UTC for `timestamptz`).
    Timestamp(i64),
}

impl Bound {
    /// `value` (a YAML scalar) as the server's type `t`, or why not.
    pub fn convert(value: &serde_json::Value, t: &Type) -> Result<Bound, String> {
        use serde_json::Value as J;
        let text = match value {
            J::Null => return Ok(Bound::Null),
            J::String(s) => s.clone(),
            J::Number(n) => n.to_string(),
            J::Bool(b) => b.to_string(),
            J::Array(_) | J::Object(_) => return Err("a list or a map cannot be bound".into()),
        };
        let number = |what: &str| format!("'{text}' is not {what}");
        Ok(match *t {
            Type::BOOL => match text.as_str() {
                "true" => Bound::Bool(true),
                "false" => Bound::Bool(false),
                _ => return Err(number("true or false")),
            },
            Type::INT2 => Bound::I16(text.parse().map_err(|_| number("a smallint"))?),
            Type::INT4 => Bound::I32(text.parse().map_err(|_| number("an integer"))?),
            Type::INT8 => Bound::I64(text.parse().map_err(|_| number("a bigint"))?),
            Type::FLOAT4 => Bound::F32(text.parse().map_err(|_| number("a number"))?),
            Type::FLOAT8 => Bound::F64(text.parse().map_err(|_| number("a number"))?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Bound::Text(text)
            }
            Type::DATE => {
                let d = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                    .map_err(|_| number("a date like 2026-01-05"))?;
                let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a valid date");
                Bound::Date((d - epoch).num_days() as i32)
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Bound::Timestamp(
                timestamp_micros(&text)
                    .ok_or_else(|| number("a timestamp like 2026-01-05T09:15:00[Z]"))?
                    - PG_EPOCH_MICROS,
            ),
            _ => {
                return Err(format!(
                    "the query expects {t} here, which fetch.postgres cannot bind; \
                     cast it in the query, e.g. $n::text::{t}"
                ));
            }
        })
    }
}

/// Microseconds since 1970 of ISO text, UTC when it has no offset; a bare
/// date is its midnight.
fn timestamp_micros(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

impl ToSql for Bound {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match self {
            Bound::Null => return Ok(IsNull::Yes),
            Bound::Bool(v) => out.put_u8(u8::from(*v)),
            Bound::I16(v) => out.put_i16(*v),
            Bound::I32(v) => out.put_i32(*v),
            Bound::I64(v) => out.put_i64(*v),
            Bound::F32(v) => out.put_f32(*v),
            Bound::F64(v) => out.put_f64(*v),
            Bound::Text(v) => out.put_slice(v.as_bytes()),
            Bound::Date(v) => out.put_i32(*v),
            Bound::Timestamp(v) => out.put_i64(*v),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        // Made for the statement's own parameter types by `convert`.
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
            v.extend_from_slice(&w.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_to_the_nearest_double() {
        // 12345.678 = 1 2345 . 6780 (weight 1)
        let raw = numeric_bytes(3, 1, 0, 3, &[1, 2345, 6780]);
        assert_eq!(numeric(&raw).unwrap(), 12345.678);
        // -0.0001 = 0001 at weight -1
        let raw = numeric_bytes(1, -1, 0x4000, 4, &[1]);
        assert_eq!(numeric(&raw).unwrap(), -0.0001);
        assert!(
            numeric(&numeric_bytes(0, 0, 0xC000, 0, &[]))
                .unwrap()
                .is_nan()
        );
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 0, &[])).unwrap(), 0.0);
        assert!(numeric(&[0, 2, 0]).is_err());
    }

    #[test]
    fn bound_values_take_the_servers_type_or_say_why_not() {
        use serde_json::json;
        assert_eq!(Bound::convert(&json!(5), &Type::INT4), Ok(Bound::I32(5)));
        assert_eq!(Bound::convert(&json!("5"), &Type::INT8), Ok(Bound::I64(5)));
        assert_eq!(
            Bound::convert(&json!("VNM"), &Type::TEXT),
            Ok(Bound::Text("VNM".into()))
        );
        assert_eq!(
            Bound::convert(&json!("2000-01-02"), &Type::DATE),
            Ok(Bound::Date(1))
        );
        assert_eq!(
            Bound::convert(&json!("2000-01-01T00:00:01Z"), &Type::TIMESTAMPTZ),
            Ok(Bound::Timestamp(1_000_000))
        );
        assert_eq!(
            Bound::convert(&json!("2000-01-01 00:00:00.5"), &Type::TIMESTAMP),
            Ok(Bound::Timestamp(500_000))
        );
        assert!(
            Bound::convert(&json!("x"), &Type::INT4)
                .unwrap_err()
                .contains("'x'")
        );
        assert!(
            Bound::convert(&json!(1), &Type::NUMERIC)
                .unwrap_err()
                .contains("cast")
        );
        assert!(Bound::convert(&json!([1]), &Type::INT4).is_err());
    }

    #[test]
    fn tables_are_made_from_arrow_schemas_with_their_key() {
        let schema = Schema::new(vec![
            Field::new("symbol", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("close", DataType::Float64, true),
            Field::new("volume", DataType::Int64, true),
        ]);
        let cols = columns(&schema).unwrap();
        let ddl = create_table("\"bars\"", &cols, &["symbol".into(), "ts".into()]);
        assert_eq!(
            ddl,
            "CREATE TABLE IF NOT EXISTS \"bars\" (\"symbol\" TEXT NOT NULL, \"ts\" TIMESTAMPTZ \
             NOT NULL, \"close\" FLOAT8, \"volume\" INT8, PRIMARY KEY (\"symbol\", \"ts\"))"
        );
        assert_eq!(cols[1].wire, "TIMESTAMP");
    }
}
