//! The kernel's own form of a Cedar value, for request contexts.
//!
//! A context is built from session state on every step. Built as Cedar `RestrictedExpression`s,
//! Cedar turns each record into an expression tree and evaluates it back into a value, which cost
//! as much as a policy evaluation. The kernel builds [`Val`]s instead: the gate answers most
//! requests from them directly (see [`super::compiled`]) and converts them for Cedar only when
//! Cedar is asked.

use std::sync::Arc;

use cedar_policy::{EntityUid, EvalResult, RestrictedExpression as Rx};

/// A Cedar value. Records keep their attributes sorted by name, unique.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Bool(bool),
    Long(i64),
    String(String),
    /// Shared: the same few uids go into every context of a session.
    Entity(Arc<EntityUid>),
    Set(Vec<Val>),
    Record(Vec<(String, Val)>),
    /// An extension value (decimal, datetime, ip…): carried to Cedar as built, never evaluated by
    /// the kernel. `None` when it was read back out of a Cedar context and cannot be rebuilt.
    Extension(Option<Box<Rx>>),
}

impl Val {
    /// A record of `pairs`; a name given twice is an error, as in Cedar.
    pub fn record(pairs: impl IntoIterator<Item = (String, Val)>) -> Result<Self, String> {
        let mut pairs: Vec<(String, Val)> = pairs.into_iter().collect();
        // The kernel builds its records in order; sorting moves every entry.
        if !pairs.is_sorted_by(|a, b| a.0 <= b.0) {
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        if let Some([(name, _), _]) = pairs
            .windows(2)
            .find(|w| matches!(w, [(a, _), (b, _)] if a == b))
        {
            return Err(format!("duplicate key `{name}` in record"));
        }
        Ok(Self::Record(pairs))
    }

    pub fn long(n: u64) -> Self {
        Self::Long(i64::try_from(n).unwrap_or(i64::MAX))
    }

    pub fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Self {
        Self::Set(
            items
                .into_iter()
                .map(|s| Self::String(s.to_owned()))
                .collect(),
        )
    }

    /// The attribute `name` of a record; `None` for a missing attribute or a value that is not a
    /// record.
    pub fn get(&self, name: &str) -> Option<&Val> {
        match self {
            Self::Record(pairs) => pairs
                .binary_search_by(|(k, _)| k.as_str().cmp(name))
                .ok()
                .and_then(|at| pairs.get(at))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Whether an extension value is anywhere inside: Cedar checks those when it builds them, so
    /// a context holding one is converted at once to keep its errors.
    pub fn has_extension(&self) -> bool {
        match self {
            Self::Extension(_) => true,
            Self::Set(items) => items.iter().any(Self::has_extension),
            Self::Record(pairs) => pairs.iter().any(|(_, v)| v.has_extension()),
            _ => false,
        }
    }

    /// The value as Cedar builds it.
    pub fn to_rx(&self) -> Result<Rx, String> {
        Ok(match self {
            Self::Bool(b) => Rx::new_bool(*b),
            Self::Long(n) => Rx::new_long(*n),
            Self::String(s) => Rx::new_string(s.clone()),
            Self::Entity(uid) => Rx::new_entity_uid((**uid).clone()),
            Self::Set(items) => Rx::new_set(
                items
                    .iter()
                    .map(Self::to_rx)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Self::Record(pairs) => {
                let pairs = pairs
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.to_rx()?)))
                    .collect::<Result<Vec<_>, String>>()?;
                Rx::new_record(pairs).map_err(|e| e.to_string())?
            }
            Self::Extension(Some(rx)) => (**rx).clone(),
            Self::Extension(None) => return Err("an extension value cannot be rebuilt".into()),
        })
    }

    /// A value Cedar computed (an entity attribute, a context attribute).
    pub fn from_eval(value: &EvalResult) -> Self {
        match value {
            EvalResult::Bool(b) => Self::Bool(*b),
            EvalResult::Long(n) => Self::Long(*n),
            EvalResult::String(s) => Self::String(s.clone()),
            EvalResult::EntityUid(uid) => Self::Entity(Arc::new(uid.clone())),
            EvalResult::Set(items) => Self::Set(items.iter().map(Self::from_eval).collect()),
            // A Cedar record has unique names, already sorted.
            EvalResult::Record(record) => Self::Record(
                record
                    .iter()
                    .map(|(k, v)| (k.clone(), Self::from_eval(v)))
                    .collect(),
            ),
            EvalResult::ExtensionValue(_) => Self::Extension(None),
        }
    }

    /// [`Val::from_eval`], keeping extension values rebuildable: Cedar writes them back as the
    /// expression that makes them (`decimal("1.5000")`), which is parsed again. For contexts read
    /// from outside (`explain`), not for the per-request path.
    pub fn from_eval_rebuilt(value: &EvalResult) -> Self {
        use std::str::FromStr;
        match value {
            EvalResult::Set(items) => {
                Self::Set(items.iter().map(Self::from_eval_rebuilt).collect())
            }
            EvalResult::Record(record) => Self::Record(
                record
                    .iter()
                    .map(|(k, v)| (k.clone(), Self::from_eval_rebuilt(v)))
                    .collect(),
            ),
            EvalResult::ExtensionValue(text) => {
                Self::Extension(Rx::from_str(text).ok().map(Box::new))
            }
            other => Self::from_eval(other),
        }
    }

    /// Cedar's `==`: values of different types are unequal, sets compare as sets. `None` when an
    /// extension value takes part (its equality is Cedar's to decide).
    pub fn equals(&self, other: &Val) -> Option<bool> {
        Some(match (self, other) {
            (Self::Extension(_), _) | (_, Self::Extension(_)) => return None,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Long(a), Self::Long(b)) => a == b,
            (Self::String(a), Self::String(b)) => a == b,
            (Self::Entity(a), Self::Entity(b)) => a == b,
            (Self::Set(a), Self::Set(b)) => subset(a, b)? && subset(b, a)?,
            (Self::Record(a), Self::Record(b)) => {
                if a.len() != b.len() || a.iter().zip(b).any(|((ka, _), (kb, _))| ka != kb) {
                    return Some(false);
                }
                let mut all = true;
                for ((_, va), (_, vb)) in a.iter().zip(b) {
                    all &= va.equals(vb)?;
                }
                all
            }
            _ => false,
        })
    }

    /// Whether `set` holds a value equal to `self`; `None` when extension values decide it.
    pub fn is_in(&self, set: &[Val]) -> Option<bool> {
        let mut found = false;
        for item in set {
            found |= self.equals(item)?;
        }
        Some(found)
    }
}

/// Every item of `a` is in `b`.
fn subset(a: &[Val], b: &[Val]) -> Option<bool> {
    let mut all = true;
    for item in a {
        all &= item.is_in(b)?;
    }
    Some(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_sorted_and_refuse_a_name_twice() {
        let r = Val::record([("b".into(), Val::Long(1)), ("a".into(), Val::Bool(true))]);
        let r = r.expect("record");
        assert!(matches!(r.get("a"), Some(Val::Bool(true))));
        assert!(matches!(r.get("b"), Some(Val::Long(1))));
        assert!(r.get("c").is_none());
        let twice = Val::record([("a".into(), Val::Long(1)), ("a".into(), Val::Long(2))]);
        assert_eq!(twice.err().as_deref(), Some("duplicate key `a` in record"));
    }

    #[test]
    fn equality_is_cedars() {
        let s = |items: &[i64]| Val::Set(items.iter().map(|n| Val::Long(*n)).collect());
        assert_eq!(s(&[1, 2, 2]).equals(&s(&[2, 1])), Some(true));
        assert_eq!(s(&[1, 2]).equals(&s(&[1])), Some(false));
        assert_eq!(Val::Long(1).equals(&Val::String("1".into())), Some(false));
        let ext = Val::Extension(None);
        assert_eq!(ext.equals(&Val::Long(1)), None);
        assert_eq!(s(&[1]).equals(&Val::Set(vec![Val::Extension(None)])), None);
    }
}
