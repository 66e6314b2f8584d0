//! Canonical JSON written straight from a `Serialize` value, without building a `serde_json::Value`
//! first: the same bytes as [`super::canonical_json`] of `serde_json::to_value(x)`, at a fraction
//! of the cost (building the value tree was most of the cost of hashing an event).
//!
//! Each object's entries are written as they come, then put in key order when the object closes;
//! scalars are written by serde_json itself, so strings and numbers are exactly what
//! `to_value` followed by [`super::canonical_json`] prints.

use std::fmt::Display;
use std::ops::Range;

use serde::ser::{self, Serialize};

/// Why a value has no canonical JSON: a map key that is not a string, or a `Serialize` impl that
/// failed. (`serde_json::to_value` fails on the same values.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Appends the canonical JSON of `value` to `out`, leaving out the top-level key `skip`.
pub fn write<T: Serialize + ?Sized>(
    value: &T,
    skip: Option<&'static str>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut buf = Buf {
        out: std::mem::take(out),
        entries: Vec::new(),
        scratch: Vec::new(),
    };
    let result = value.serialize(Canon {
        buf: &mut buf,
        skip,
    });
    *out = buf.out;
    result
}

/// What every level of one serialization shares, so that objects allocate nothing of their own.
struct Buf {
    out: Vec<u8>,
    /// The entries of the objects still open, innermost last: each key with its bytes in `out`.
    entries: Vec<(Key, Range<usize>)>,
    /// Where an object's entries wait while they are written back in order.
    scratch: Vec<u8>,
}

struct Canon<'a> {
    buf: &'a mut Buf,
    /// A key to leave out of the object this serializer writes (not of nested ones).
    skip: Option<&'static str>,
}

impl<'a> Canon<'a> {
    fn scalar<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        serde_json::to_writer(&mut self.buf.out, value).map_err(|e| Error(e.to_string()))
    }

    fn object(self) -> Object<'a> {
        self.buf.out.push(b'{');
        Object {
            start: self.buf.out.len(),
            first: self.buf.entries.len(),
            buf: self.buf,
            skip: self.skip,
            key: None,
        }
    }

    fn array(self) -> Array<'a> {
        self.buf.out.push(b'[');
        Array {
            buf: self.buf,
            first: true,
        }
    }

    /// Opens `{"variant":`, as serde_json writes an enum variant with data.
    fn open_variant(self, variant: &'static str) -> Result<Canon<'a>, Error> {
        self.buf.out.push(b'{');
        write_str(variant, &mut self.buf.out)?;
        self.buf.out.push(b':');
        Ok(Canon {
            buf: self.buf,
            skip: None,
        })
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    serde_json::to_writer(out, s).map_err(|e| Error(e.to_string()))
}

/// An object being written: `{` and its entries, comma-separated, as they come.
struct Object<'a> {
    buf: &'a mut Buf,
    skip: Option<&'static str>,
    /// Where its first entry begins in `out`, just after the `{`.
    start: usize,
    /// Its first entry in `buf.entries`.
    first: usize,
    /// The key of a map entry whose value comes next.
    key: Option<Key>,
}

/// A key as given: struct fields are static, map keys are built.
enum Key {
    Static(&'static str),
    Owned(String),
}

impl Key {
    fn as_str(&self) -> &str {
        match self {
            Self::Static(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl<'a> Object<'a> {
    fn entry<T: Serialize + ?Sized>(&mut self, key: Key, value: &T) -> Result<(), Error> {
        if self.skip == Some(key.as_str()) {
            return Ok(());
        }
        if self.buf.entries.len() > self.first {
            self.buf.out.push(b',');
        }
        let begin = self.buf.out.len();
        write_str(key.as_str(), &mut self.buf.out)?;
        self.buf.out.push(b':');
        value.serialize(Canon {
            buf: &mut *self.buf,
            skip: None,
        })?;
        let end = self.buf.out.len();
        self.buf.entries.push((key, begin..end));
        Ok(())
    }

    /// Closes the object, first rewriting its entries in key order (by UTF-8 bytes, which is
    /// `str`'s order) unless they came in that order.
    fn close(self) -> &'a mut Buf {
        let Buf {
            out,
            entries,
            scratch,
        } = &mut *self.buf;
        let mine = entries.get_mut(self.first..).unwrap_or_default();
        if !mine.is_sorted_by(|a, b| a.0.as_str() <= b.0.as_str()) {
            mine.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            scratch.clear();
            scratch.extend_from_slice(out.get(self.start..).unwrap_or_default());
            out.truncate(self.start);
            for (i, (_, range)) in mine.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let range = range.start - self.start..range.end - self.start;
                out.extend_from_slice(scratch.get(range).unwrap_or_default());
            }
        }
        entries.truncate(self.first);
        out.push(b'}');
        self.buf
    }
}

struct Array<'a> {
    buf: &'a mut Buf,
    first: bool,
}

impl<'a> Array<'a> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !std::mem::take(&mut self.first) {
            self.buf.out.push(b',');
        }
        value.serialize(Canon {
            buf: &mut *self.buf,
            skip: None,
        })
    }

    fn close(self) -> &'a mut Buf {
        self.buf.out.push(b']');
        self.buf
    }
}

/// A variant with data, `{"variant": ...}`, whose content is an array or an object.
struct Variant<T> {
    inner: T,
}

/// Scalars serde_json writes, as `to_value` followed by the canonical form would.
macro_rules! written_by_serde_json {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Error> {
            self.scalar(&v)
        }
    )*};
}

/// Map keys that serde_json writes as their `Display` form.
macro_rules! written_as_keys {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<String, Error> {
            Ok(v.to_string())
        }
    )*};
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Variant<Array<'a>>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Variant<Object<'a>>;

    written_by_serde_json!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
        serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_f64: f64,
        serialize_char: char
    );
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        // `to_value` keeps an f32 as the f64 it converts to.
        self.scalar(&f64::from(v))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(v, &mut self.buf.out)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.scalar(v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.scalar(&())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_str(variant, &mut self.buf.out)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let inner = self.open_variant(variant)?;
        let buf = &mut *inner.buf;
        value.serialize(Canon { buf, skip: None })?;
        inner.buf.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, Error> {
        Ok(self.array())
    }
    fn serialize_tuple(self, _: usize) -> Result<Array<'a>, Error> {
        Ok(self.array())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Array<'a>, Error> {
        Ok(self.array())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<Array<'a>>, Error> {
        Ok(Variant {
            inner: self.open_variant(variant)?.array(),
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, Error> {
        Ok(self.object())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, Error> {
        Ok(self.object())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Variant<Object<'a>>, Error> {
        Ok(Variant {
            inner: self.open_variant(variant)?.object(),
        })
    }
}

/// Serde's sequence traits differ only in their names: an array writes each the same way.
macro_rules! array_like {
    ($($name:ident :: $method:ident),*) => {$(
        impl ser::$name for Array<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.item(value)
            }
            fn end(self) -> Result<(), Error> {
                self.close();
                Ok(())
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

impl ser::SerializeTupleVariant for Variant<Array<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.inner.item(value)
    }
    fn end(self) -> Result<(), Error> {
        self.inner.close().out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(Key::Owned(key.serialize(KeyName)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without a key".into()))?;
        self.entry(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.entry(Key::Static(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.close();
        Ok(())
    }
}

impl ser::SerializeStructVariant for Variant<Object<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.inner.entry(Key::Static(key), value)
    }
    fn end(self) -> Result<(), Error> {
        self.inner.close().out.push(b'}');
        Ok(())
    }
}

/// A map key as the string serde_json would make of it.
struct KeyName;

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Error;
    type SerializeSeq = ser::Impossible<String, Error>;
    type SerializeTuple = ser::Impossible<String, Error>;
    type SerializeTupleStruct = ser::Impossible<String, Error>;
    type SerializeTupleVariant = ser::Impossible<String, Error>;
    type SerializeMap = ser::Impossible<String, Error>;
    type SerializeStruct = ser::Impossible<String, Error>;
    type SerializeStructVariant = ser::Impossible<String, Error>;

    fn serialize_str(self, v: &str) -> Result<String, Error> {
        Ok(v.to_owned())
    }
    written_as_keys!(
        serialize_char: char, serialize_bool: bool, serialize_i8: i8, serialize_i16: i16,
        serialize_i32: i32, serialize_i64: i64, serialize_u8: u8, serialize_u16: u16,
        serialize_u32: u32, serialize_u64: u64
    );
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<String, Error> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<String, Error> {
        value.serialize(self)
    }
    fn serialize_f32(self, _: f32) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _: f64) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Error> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(not_a_key())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(not_a_key())
    }
}

fn not_a_key() -> Error {
    Error("a map key must be a string".into())
}
