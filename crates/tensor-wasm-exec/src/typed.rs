//! The typed calling convention: JSON numbers in, JSON numbers out, checked
//! against the export's Wasm signature.

use serde::{Serialize, Serializer};
use wasmtime::{FuncType, Val, ValType};

use crate::ExecError;

/// A numeric Wasm value as it crosses the typed calling convention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypedValue {
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
}

impl Serialize for TypedValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::I32(v) => s.serialize_i32(v),
            Self::I64(v) => s.serialize_i64(v),
            Self::F32(v) => s.serialize_f32(v),
            Self::F64(v) => s.serialize_f64(v),
        }
    }
}

impl std::fmt::Display for TypedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::I32(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
        }
    }
}

impl TypedValue {
    pub(crate) fn into_val(self) -> Val {
        match self {
            Self::I32(v) => Val::I32(v),
            Self::I64(v) => Val::I64(v),
            Self::F32(v) => Val::F32(v.to_bits()),
            Self::F64(v) => Val::F64(v.to_bits()),
        }
    }

    pub(crate) fn from_val(v: &Val) -> Option<Self> {
        Some(match *v {
            Val::I32(v) => Self::I32(v),
            Val::I64(v) => Self::I64(v),
            Val::F32(bits) => Self::F32(f32::from_bits(bits)),
            Val::F64(bits) => Self::F64(f64::from_bits(bits)),
            _ => return None,
        })
    }
}

/// The signature of one exported function, for listings and error messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSignature {
    /// Export name.
    pub name: String,
    /// Parameter types (`i32`, `i64`, `f32`, `f64`, or another Wasm type name).
    pub params: Vec<String>,
    /// Result types.
    pub results: Vec<String>,
}

impl ExportSignature {
    pub(crate) fn new(name: &str, ty: &FuncType) -> Self {
        Self {
            name: name.to_owned(),
            params: ty.params().map(|t| type_name(&t)).collect(),
            results: ty.results().map(|t| type_name(&t)).collect(),
        }
    }
}

impl std::fmt::Display for ExportSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({})", self.name, self.params.join(", "))?;
        match self.results.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " -> {one}"),
            many => write!(f, " -> ({})", many.join(", ")),
        }
    }
}

fn type_name(t: &ValType) -> String {
    match t {
        ValType::I32 => "i32".into(),
        ValType::I64 => "i64".into(),
        ValType::F32 => "f32".into(),
        ValType::F64 => "f64".into(),
        ValType::V128 => "v128".into(),
        ValType::Ref(r) => r.to_string(),
    }
}

/// Checks JSON arguments against a signature and converts them.
///
/// Integers must be whole numbers in range (i32 also accepts the u32 range,
/// reinterpreted as two's complement; i64 accepts decimal strings for values
/// JSON numbers cannot carry exactly); floats accept any JSON number.
pub fn parse_args(
    sig: &ExportSignature,
    args: &[serde_json::Value],
) -> Result<Vec<TypedValue>, ExecError> {
    let mismatch = |message: String| ExecError::SignatureMismatch {
        signature: sig.to_string(),
        message,
    };
    if args.len() != sig.params.len() {
        return Err(mismatch(format!(
            "expected {} argument(s), got {}",
            sig.params.len(),
            args.len()
        )));
    }
    sig.params
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (ty, arg))| {
            convert(ty, arg)
                .ok_or_else(|| mismatch(format!("argument {i} ({arg}) is not a valid {ty}")))
        })
        .collect()
}

fn convert(ty: &str, arg: &serde_json::Value) -> Option<TypedValue> {
    match ty {
        "i32" => {
            let v = as_i128(arg)?;
            if (i32::MIN as i128..=u32::MAX as i128).contains(&v) {
                Some(TypedValue::I32(v as i64 as i32))
            } else {
                None
            }
        }
        "i64" => {
            let v = as_i128(arg)?;
            if (i64::MIN as i128..=u64::MAX as i128).contains(&v) {
                Some(TypedValue::I64(v as i64))
            } else {
                None
            }
        }
        "f32" => Some(TypedValue::F32(arg.as_f64()? as f32)),
        "f64" => Some(TypedValue::F64(arg.as_f64()?)),
        _ => None,
    }
}

fn as_i128(arg: &serde_json::Value) -> Option<i128> {
    match arg {
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        serde_json::Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(params: &[&str]) -> ExportSignature {
        ExportSignature {
            name: "f".into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            results: vec!["i32".into()],
        }
    }

    #[test]
    fn integers_are_range_checked() {
        let s = sig(&["i32"]);
        assert_eq!(
            parse_args(&s, &[json!(7)]).unwrap(),
            vec![TypedValue::I32(7)]
        );
        assert_eq!(
            parse_args(&s, &[json!(u32::MAX)]).unwrap(),
            vec![TypedValue::I32(-1)]
        );
        assert!(parse_args(&s, &[json!(1u64 << 33)]).is_err());
        assert!(parse_args(&s, &[json!(1.5)]).is_err());
        assert!(parse_args(&s, &[json!("x")]).is_err());
    }

    #[test]
    fn i64_accepts_decimal_strings() {
        let s = sig(&["i64"]);
        assert_eq!(
            parse_args(&s, &[json!("9007199254740993")]).unwrap(),
            vec![TypedValue::I64(9_007_199_254_740_993)]
        );
    }

    #[test]
    fn arity_mismatch_names_the_signature() {
        let err = parse_args(&sig(&["i32", "f64"]), &[json!(1)]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("f(i32, f64) -> i32"), "{msg}");
        assert!(msg.contains("expected 2"), "{msg}");
    }
}
