//! JSON Schema → Cedar types, and JSON values → Cedar values of those types.
//!
//! The mapping is cedar-for-agents': integer → Long, string → String (date/date-time → datetime,
//! ipv4/ipv6 → ipaddr), boolean → Bool, number → decimal, array → Set, object → record, a property
//! not in `required` → optional attribute. Differences, all failing closed: a number with more than
//! the 4 decimal places Cedar's decimal holds is rejected rather than rounded (rounding could slip
//! past a threshold) unless it is a binary-float artifact of a 4-place one; a string enum stays a
//! String; records are closed, and a free-form object below the top level is `{ keys, strings }`. The optional, reference and mixin forms
//! generators write are rewritten first ([`crate::schema_forms`]); what still has no Cedar type
//! (a real union, a recursive schema) is refused at registration with the JSON pointer of every
//! construct.

use cedar_policy::RestrictedExpression;

use crate::gate::Val;
use serde_json::Value;

use crate::error::ArgumentError;

/// A Cedar type a tool argument can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CedarType {
    Long,
    String,
    Bool,
    Decimal,
    DateTime,
    IpAddr,
    Set(Box<CedarType>),
    Record(Vec<Field>),
    /// A free-form object (an object schema with no `properties`, below the top level): what a
    /// policy can test of it is `{ keys, strings }`, every key and every string leaf at any depth.
    Free,
}

/// A record attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    /// Present in every value. A nullable field is never required: `null` is taken as absent.
    pub required: bool,
    /// The schema allows `null` (see [`crate::schema_forms`]).
    pub nullable: bool,
    pub ty: CedarType,
}

/// Keywords that would change what a value may be in ways no Cedar type holds. Refused wherever
/// they occur in a tool's schema, not only where typing looks (under `properties` and `items`):
/// a `$ref` tucked under `additionalProperties` or `$defs` is as untyped as one at the top.
const UNTYPED_KEYWORDS: [&str; 16] = [
    "$ref",
    "$dynamicRef",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "if",
    "patternProperties",
    "prefixItems",
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentSchemas",
    "propertyNames",
    "contains",
];

/// The `format` values JSON Schema (2020-12) defines; any other is a typo or a private extension,
/// which no validator checks.
const FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Every place in `schema` (a tool's input schema) that uses a keyword with no Cedar type, or
/// `additionalProperties`/`items` in a form Cedar cannot hold; each message names its JSON pointer.
pub(crate) fn untyped_keywords(schema: &Value) -> Vec<String> {
    fn walk(value: &Value, pointer: String, out: &mut Vec<String>, depth: usize) {
        if depth > crate::MAX_JSON_DEPTH {
            out.push(format!(
                "at {pointer}: nested deeper than {}",
                crate::MAX_JSON_DEPTH
            ));
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, sub) in map {
                    let here = format!("{pointer}/{}", escape(key));
                    let untyped = UNTYPED_KEYWORDS.contains(&key.as_str())
                        || (key == "additionalProperties" && !sub.is_boolean())
                        || (key == "items" && sub.is_array());
                    if untyped {
                        out.push(format!(
                            "at {here}: `{key}` has no Cedar type; describe the argument with one `type`"
                        ));
                    }
                    // Under `properties` the keys are argument names, not keywords; `enum`,
                    // `const`, `default` and `examples` hold data.
                    if matches!(key.as_str(), "enum" | "const" | "default" | "examples") {
                        continue;
                    }
                    if key == "properties"
                        && let Value::Object(props) = sub
                    {
                        for (name, prop) in props {
                            if name.is_empty() || name.chars().any(char::is_control) {
                                out.push(format!(
                                    "at {here}: argument name {name:?} is empty or holds a control character"
                                ));
                                continue;
                            }
                            walk(prop, format!("{here}/{}", escape(name)), out, depth + 1);
                        }
                    } else {
                        walk(sub, here, out, depth + 1);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{pointer}/{i}"), out, depth + 1);
                }
            }
            _ => {}
        }
    }
    /// A key as a JSON pointer token (RFC 6901).
    fn escape(key: &str) -> String {
        key.replace('~', "~0").replace('/', "~1")
    }
    let mut out = Vec::new();
    walk(schema, String::new(), &mut out, 0);
    out
}

impl CedarType {
    /// The Cedar type of the JSON Schema at `pointer`, or a message naming what cannot be typed.
    pub fn from_json_schema(schema: &Value, pointer: &str) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        match Self::typed(schema, pointer, &mut errors) {
            Ok(ty) if errors.is_empty() => Ok(ty),
            Ok(_) => Err(errors),
            Err(e) => {
                errors.push(e);
                Err(errors)
            }
        }
    }

    /// The type at `pointer`; problems below it (in properties) go to `errors`, so every one is
    /// reported, and the first problem at `pointer` itself is the error.
    fn typed(schema: &Value, pointer: &str, errors: &mut Vec<String>) -> Result<Self, String> {
        let here = if pointer.is_empty() { "/" } else { pointer };
        let Some(obj) = schema.as_object() else {
            return Err(format!(
                "at {here}: a schema must be an object with a `type`"
            ));
        };
        for unsupported in ["$ref", "anyOf", "oneOf", "allOf", "not", "if"] {
            if obj.contains_key(unsupported) {
                return Err(format!(
                    "at {here}: `{unsupported}` has no Cedar type; describe the argument with one `type`"
                ));
            }
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            return if values.is_empty() {
                Err(format!(
                    "at {here}: an empty `enum` admits no value: the tool could never be called"
                ))
            } else if values.iter().all(Value::is_string) {
                Ok(Self::String)
            } else if values.iter().all(|v| v.is_i64()) {
                Ok(Self::Long)
            } else {
                Err(format!(
                    "at {here}: an enum must list only strings or only integers"
                ))
            };
        }
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(_) => {
                return Err(format!(
                    "at {here}: `type` must be a single type name (type lists have no Cedar type)"
                ));
            }
            None if obj.contains_key("properties") => "object",
            None => return Err(format!("at {here}: missing `type`")),
        };
        match ty {
            "integer" => Ok(Self::Long),
            "number" => Ok(Self::Decimal),
            "boolean" => Ok(Self::Bool),
            "string" => Ok(match obj.get("format").and_then(Value::as_str) {
                Some("date" | "date-time") => Self::DateTime,
                Some("ipv4" | "ipv6") => Self::IpAddr,
                Some(f) if !FORMATS.contains(&f) => {
                    return Err(format!(
                        "at {here}: unknown `format` \"{}\" (JSON Schema defines: {})",
                        f.escape_debug(),
                        FORMATS.join(", ")
                    ));
                }
                _ => Self::String,
            }),
            "array" => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| format!("at {here}: an array needs `items`"))?;
                Ok(Self::Set(Box::new(Self::typed(
                    items,
                    &format!("{pointer}/items"),
                    errors,
                )?)))
            }
            "object" => {
                let required: Vec<&str> = obj
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut fields = Vec::new();
                if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                    for (name, sub) in props {
                        let at = format!("{pointer}/properties/{name}");
                        let ty = match Self::typed(sub, &at, errors) {
                            Ok(ty) => ty,
                            Err(e) => {
                                errors.push(e);
                                continue;
                            }
                        };
                        let nullable =
                            sub.get(crate::schema_forms::NULLABLE) == Some(&Value::Bool(true));
                        fields.push(Field {
                            name: name.clone(),
                            required: required.contains(&name.as_str()) && !nullable,
                            nullable,
                            ty,
                        });
                    }
                }
                fields.sort_by(|a, b| a.name.cmp(&b.name));
                if pointer.is_empty()
                    && fields.is_empty()
                    && obj.get("additionalProperties") == Some(&Value::Bool(true))
                {
                    return Err("at /: arguments free-form at the top level \
                                (`additionalProperties: true`, no `properties`) reach the tool \
                                unseen by any policy; declare them"
                        .into());
                }
                let free = !pointer.is_empty()
                    && fields.is_empty()
                    && !errors
                        .iter()
                        .any(|e| e.starts_with(&format!("at {pointer}/")))
                    && obj.get("additionalProperties") != Some(&Value::Bool(false));
                Ok(if free {
                    Self::Free
                } else {
                    Self::Record(fields)
                })
            }
            "null" => Err(format!("at {here}: `null` has no Cedar type")),
            other => Err(format!("at {here}: unknown type `{other}`")),
        }
    }

    /// The type in Cedar schema syntax.
    pub fn to_cedarschema(&self) -> String {
        match self {
            Self::Long => "Long".into(),
            Self::String => "String".into(),
            Self::Bool => "Bool".into(),
            Self::Decimal => "decimal".into(),
            Self::DateTime => "datetime".into(),
            Self::IpAddr => "ipaddr".into(),
            Self::Set(t) => format!("Set<{}>", t.to_cedarschema()),
            Self::Record(fields) => {
                let attrs: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        let opt = if f.required { "" } else { "?" };
                        format!("{}{opt}: {}", quote(&f.name), f.ty.to_cedarschema())
                    })
                    .collect();
                format!("{{ {} }}", attrs.join(", "))
            }
            Self::Free => "{ \"keys\": Set<String>, \"strings\": Set<String> }".into(),
        }
    }

    /// A JSON value of this type with every optional attribute present and one element in every
    /// set, so that checking it exercises the whole type (see the request contract check).
    pub fn sample(&self) -> Value {
        match self {
            Self::Long | Self::Decimal => Value::from(0),
            Self::String => Value::from("sample"),
            Self::Bool => Value::Bool(false),
            Self::DateTime => Value::from("2026-01-01T00:00:00Z"),
            Self::IpAddr => Value::from("127.0.0.1"),
            Self::Set(item) => Value::Array(vec![item.sample()]),
            Self::Record(fields) => Value::Object(
                fields
                    .iter()
                    .map(|f| (f.name.clone(), f.ty.sample()))
                    .collect(),
            ),
            Self::Free => Value::Object(serde_json::Map::new()),
        }
    }

    /// The type of the attribute at `path` (dot-separated) inside this record.
    pub fn field(&self, path: &str) -> Option<(&CedarType, bool)> {
        let mut ty = self;
        let mut required = true;
        for part in path.split('.') {
            let Self::Record(fields) = ty else {
                return None;
            };
            let f = fields.iter().find(|f| f.name == part)?;
            required &= f.required;
            ty = &f.ty;
        }
        Some((ty, required))
    }

    /// `value` (already valid under the JSON Schema) as a Cedar value of this type. Attributes the
    /// type does not declare are dropped: Cedar records are closed.
    pub fn to_value(&self, value: &Value, path: &str) -> Result<Val, ArgumentError> {
        let fail = |message: String| ArgumentError {
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
            message,
        };
        match (self, value) {
            (Self::Long, v) => integer(v)
                .map(Val::Long)
                .ok_or_else(|| fail(format!("{v} is not a 64-bit integer"))),
            (Self::String, Value::String(s)) => Ok(Val::String(s.clone())),
            (Self::Bool, Value::Bool(b)) => Ok(Val::Bool(*b)),
            (Self::Decimal, Value::Number(n)) => decimal(n)
                .map(|d| extension(RestrictedExpression::new_decimal(d)))
                .map_err(fail),
            (Self::DateTime, Value::String(s)) => datetime(s)
                .map(|d| extension(RestrictedExpression::new_datetime(d)))
                .map_err(fail),
            (Self::IpAddr, Value::String(s)) => Ok(extension(RestrictedExpression::new_ip(s))),
            (Self::Set(item), Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    out.push(item.to_value(v, &format!("{path}/{i}"))?);
                }
                Ok(Val::Set(out))
            }
            (Self::Record(fields), Value::Object(map)) => {
                // A schema's properties are the whole record: an argument it does not declare
                // would reach the tool while no policy can see it. (A free-form object below the
                // top level is `Free`, not a record.)
                if let Some(extra) = map
                    .keys()
                    .find(|k| fields.binary_search_by(|f| f.name.as_str().cmp(k)).is_err())
                {
                    return Err(ArgumentError {
                        path: format!("{path}/{extra}"),
                        message: "is not declared by the tool's schema".into(),
                    });
                }
                let mut out = Vec::with_capacity(fields.len());
                for f in fields {
                    let sub = format!("{path}/{}", f.name);
                    match map.get(&f.name) {
                        Some(Value::Null) if f.nullable => {}
                        Some(v) => out.push((f.name.clone(), f.ty.to_value(v, &sub)?)),
                        None if f.required => {
                            return Err(ArgumentError {
                                path: sub,
                                message: "is required".into(),
                            });
                        }
                        None => {}
                    }
                }
                Val::record(out).map_err(fail)
            }
            (Self::Free, Value::Object(_)) => {
                let (mut keys, mut strings) = (Vec::new(), Vec::new());
                leaves(value, &mut keys, &mut strings);
                keys.sort_unstable();
                keys.dedup();
                strings.sort_unstable();
                strings.dedup();
                let set = |items: Vec<&str>| {
                    Val::Set(
                        items
                            .into_iter()
                            .map(|s| Val::String(s.to_owned()))
                            .collect(),
                    )
                };
                Val::record([
                    ("keys".to_owned(), set(keys)),
                    ("strings".to_owned(), set(strings)),
                ])
                .map_err(fail)
            }
            (ty, v) => Err(fail(format!("{v} is not a {}", ty.to_cedarschema()))),
        }
    }
}

/// `f` with 4 decimal places, when `f` differs from that only by binary floating-point noise.
fn float_artifact(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let fixed = format!("{f:.4}");
    let rounded: f64 = fixed.parse().ok()?;
    ((f - rounded).abs() <= 1e-9 * f.abs().max(1.0)).then_some(fixed)
}

/// Every key and every string leaf under `value` (depth is bounded at intake).
fn leaves<'a>(value: &'a Value, keys: &mut Vec<&'a str>, strings: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                keys.push(k);
                leaves(v, keys, strings);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| leaves(v, keys, strings)),
        Value::String(s) => strings.push(s),
        _ => {}
    }
}

fn extension(rx: RestrictedExpression) -> Val {
    Val::Extension(Some(Box::new(rx)))
}

fn integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    // JSON Schema counts 5.0 as an integer.
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64).then_some(f as i64)
}

/// A JSON number as Cedar decimal text, exactly, or an error when it needs more than 4 places or
/// falls outside Cedar's range.
fn decimal(n: &serde_json::Number) -> Result<String, String> {
    let text = n.to_string();
    let plain = if text.contains(['e', 'E']) {
        let f = n
            .as_f64()
            .ok_or_else(|| format!("{text} is not a finite number"))?;
        format!("{f:.12}")
    } else {
        text.clone()
    };
    match decimal_text(&plain, &text) {
        Err(e) if e.contains("decimal places") => {
            // A binary-float artifact of a 4-place decimal (`0.1 + 0.2` written as
            // `0.30000000000000004`) is taken as that decimal; a number genuinely more precise is
            // refused (rounding it could slip it past a threshold). The event keeps the number as
            // sent.
            match n.as_f64().and_then(float_artifact) {
                Some(fixed) => decimal_text(&fixed, &text),
                None => Err(format!(
                    "{e} (and is not a rounding artifact of a number that has them)"
                )),
            }
        }
        other => other,
    }
}

/// `plain` (`-?digits[.digits]`) in Cedar's decimal form; `text` is the number as sent, for errors.
fn decimal_text(plain: &str, text: &str) -> Result<String, String> {
    let (negative, digits) = match plain.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, plain),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = frac.trim_end_matches('0');
    if frac.len() > 4 {
        return Err(format!(
            "{text} has more than the 4 decimal places Cedar's decimal holds"
        ));
    }
    let int_part: i64 = int
        .parse()
        .map_err(|_| format!("{text} is out of Cedar's decimal range"))?;
    let frac_part: i64 = format!("{frac:0<4}").parse().unwrap_or(0);
    int_part
        .checked_mul(10_000)
        .and_then(|v| v.checked_add(frac_part))
        .ok_or_else(|| format!("{text} is out of Cedar's decimal range"))?;
    let sign = if negative { "-" } else { "" };
    Ok(format!("{sign}{int_part}.{frac:0<4}"))
}

/// RFC 3339 text in the forms Cedar's `datetime` accepts: `Z` or `±hhmm` offsets, and exactly three
/// fractional digits (more are accepted only when the extra ones are zeros).
fn datetime(s: &str) -> Result<String, String> {
    if !s.is_ascii() {
        return Err(format!("{s} is not an RFC 3339 date-time"));
    }
    let upper = s.to_ascii_uppercase();
    let Some((date, time)) = upper.split_once('T') else {
        return Ok(upper); // a bare date
    };
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, "Z".to_owned())
    } else if let Some(i) = time.rfind(['+', '-']) {
        (&time[..i], time[i..].replace(':', ""))
    } else {
        return Err(format!("{s} has no time zone offset"));
    };
    let clock = match clock.split_once('.') {
        None => clock.to_owned(),
        Some((hms, frac)) => {
            if frac.len() > 3 && frac[3..].bytes().any(|b| b != b'0') {
                return Err(format!(
                    "{s} is more precise than the millisecond Cedar's datetime holds"
                ));
            }
            format!("{hms}.{:0<3}", &frac[..frac.len().min(3)])
        }
    };
    Ok(format!("{date}T{clock}{offset}"))
}

/// A Cedar string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_schema_maps_to_the_cedar_for_agents_shape() {
        let schema = json!({
            "type": "object",
            "properties": {
                "amount": {"type": "integer"},
                "rate": {"type": "number"},
                "to": {"type": "string"},
                "when": {"type": "string", "format": "date-time"},
                "from_ip": {"type": "string", "format": "ipv4"},
                "urgent": {"type": "boolean"},
                "cc": {"type": "array", "items": {"type": "string"}},
                "meta": {"type": "object", "properties": {"ref": {"type": "string"}}, "required": ["ref"]}
            },
            "required": ["amount", "to"]
        });
        let ty = CedarType::from_json_schema(&schema, "").expect("typed");
        assert_eq!(
            ty.to_cedarschema(),
            r#"{ "amount": Long, "cc"?: Set<String>, "from_ip"?: ipaddr, "meta"?: { "ref": String }, "rate"?: decimal, "to": String, "urgent"?: Bool, "when"?: datetime }"#
        );
        assert_eq!(
            ty.field("meta.ref").map(|(t, r)| (t.clone(), r)),
            Some((CedarType::String, false))
        );
    }

    #[test]
    fn untypable_schemas_are_refused_with_their_pointer() {
        let schema =
            json!({"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}]}}});
        let err = CedarType::from_json_schema(&schema, "").expect_err("refused");
        assert!(
            err[0].contains("/properties/x") && err[0].contains("anyOf"),
            "{err:?}"
        );
        let lists = json!({"type": "object", "properties": {"y": {"type": ["string", "integer"]}}});
        assert!(CedarType::from_json_schema(&lists, "").is_err());
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        let d = |v: Value| match v {
            Value::Number(n) => decimal(&n),
            _ => unreachable!(),
        };
        assert_eq!(d(json!(12.5)), Ok("12.5000".into()));
        assert_eq!(d(json!(-0.25)), Ok("-0.2500".into()));
        assert_eq!(d(json!(100)), Ok("100.0000".into()));
        assert_eq!(d(json!(1e-4)), Ok("0.0001".into()));
        assert!(
            d(json!(100.00001)).is_err(),
            "rounding could slip past a threshold"
        );
        assert!(d(json!(1e300)).is_err());
        // A binary-float artifact of a 4-place decimal is that decimal (issue 17, 2).
        assert_eq!(d(json!(0.30000000000000004)), Ok("0.3000".into()));
        assert_eq!(d(json!(-98.69999999999999)), Ok("-98.7000".into()));
        assert!(
            d(json!(0.12345)).is_err(),
            "a fifth place is real precision"
        );
    }

    #[test]
    fn the_top_level_is_closed_even_without_properties() {
        let none = CedarType::from_json_schema(&json!({"type": "object"}), "").expect("typed");
        assert!(none.to_value(&json!({}), "").is_ok());
        let err = none
            .to_value(&json!({"bcc": "x@evil.example"}), "")
            .expect_err("closed");
        assert_eq!(err.path, "/bcc");
        let open = json!({"type": "object", "additionalProperties": true});
        let errs = CedarType::from_json_schema(&open, "").expect_err("refused");
        assert!(errs[0].contains("free-form at the top level"), "{errs:?}");
    }

    #[test]
    fn a_free_form_object_shows_its_keys_and_string_leaves() {
        let schema = json!({"type": "object", "properties": {
            "attachments": {"type": "array", "items": {"type": "object"}},
            "meta": {"type": "object"}
        }});
        let ty = CedarType::from_json_schema(&schema, "").expect("typed");
        assert_eq!(
            ty.to_cedarschema(),
            r#"{ "attachments"?: Set<{ "keys": Set<String>, "strings": Set<String> }>, "meta"?: { "keys": Set<String>, "strings": Set<String> } }"#
        );
        let v = ty
            .to_value(
                &json!({"meta": {"to": {"name": "Eve", "addr": "eve@evil.example"}, "n": 3}}),
                "",
            )
            .expect("typed");
        let meta = v.get("meta").expect("meta");
        let strings = meta.get("strings").expect("strings");
        assert!(
            matches!(strings, Val::Set(items) if items.iter().any(|s| matches!(s, Val::String(s) if s == "eve@evil.example"))),
            "{strings:?}"
        );
        assert!(matches!(meta.get("keys"), Some(Val::Set(k)) if k.len() == 4));
    }

    #[test]
    fn datetimes_are_normalised_to_cedar_forms() {
        assert_eq!(
            datetime("2026-11-24t10:00:00+01:00"),
            Ok("2026-11-24T10:00:00+0100".into())
        );
        assert_eq!(
            datetime("2026-11-24T10:00:00.5Z"),
            Ok("2026-11-24T10:00:00.500Z".into())
        );
        assert_eq!(datetime("2026-11-24"), Ok("2026-11-24".into()));
        assert!(datetime("2026-11-24T10:00:00.1234Z").is_err());
        assert!(
            datetime("2026-11-24T10:00:00.1é4Z").is_err(),
            "no byte slicing inside a character"
        );
    }
}
