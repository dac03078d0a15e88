//! Just enough PTX parsing to know each entry point's parameter list, so a
//! launch's typed arguments are checked before anything reaches a driver.
//! The driver itself never checks argument types or counts: without this, a
//! wrong argument list would be undefined behaviour on the device.

use crate::error::GpuError;
use std::collections::HashMap;

/// The kind of one `.param` of a kernel entry, by width and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `.s32`, `.u32`, `.b32`
    Int32,
    /// `.s64`, `.u64`, `.b64` (pointers are passed this way)
    Int64,
    /// `.f32`
    F32,
    /// `.f64`
    F64,
}

/// The parameter lists of every `.entry` in one PTX module.
#[derive(Debug, Clone, Default)]
pub struct ModuleSignature {
    entries: HashMap<String, Vec<ParamKind>>,
}

impl ModuleSignature {
    /// The parameters of `entry`, if the module defines it.
    pub fn entry(&self, entry: &str) -> Option<&[ParamKind]> {
        self.entries.get(entry).map(Vec::as_slice)
    }

    /// Parses the entry points of `ptx`.
    ///
    /// Text this scanner could read differently from the driver is refused
    /// rather than guessed at: string literals (a quoted `.file` name can
    /// hide `/*` or `.entry`), and any `.entry` that is not a
    /// whitespace-delimited directive (`.visible.entry`, `x.entry`).
    pub fn parse(ptx: &str) -> Result<Self, GpuError> {
        if ptx.contains('"') {
            return Err(GpuError::KernelLoad(
                "PTX with string literals (for example `.file` directives) is refused: \
                 the parameter scanner cannot read it unambiguously; compile without line info"
                    .into(),
            ));
        }
        let text = strip_comments(ptx);
        let mentions = text.matches(".entry").count();
        let mut entries = HashMap::new();
        let mut found = 0usize;
        let mut rest = text.as_str();
        while let Some(pos) = find_directive(rest, ".entry") {
            found += 1;
            rest = &rest[pos + ".entry".len()..];
            let trimmed = rest.trim_start();
            let name_len = trimmed
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '%'))
                .unwrap_or(trimmed.len());
            if name_len == 0 {
                return Err(GpuError::KernelLoad(".entry without a name".into()));
            }
            let name = trimmed[..name_len].to_string();
            let after = trimmed[name_len..].trim_start();
            let params = if let Some(list) = after.strip_prefix('(') {
                let close = list.find(')').ok_or_else(|| {
                    GpuError::KernelLoad(format!("entry {name}: unterminated parameter list"))
                })?;
                parse_params(&name, &list[..close])?
            } else {
                Vec::new()
            };
            entries.insert(name, params);
        }
        if found != mentions {
            return Err(GpuError::KernelLoad(
                "PTX mentions `.entry` outside a whitespace-delimited directive \
                 (e.g. `.visible.entry`); write `.visible .entry`"
                    .into(),
            ));
        }
        if entries.len() != found {
            return Err(GpuError::KernelLoad(
                "PTX defines the same .entry twice".into(),
            ));
        }
        if entries.is_empty() {
            return Err(GpuError::KernelLoad("PTX defines no .entry".into()));
        }
        Ok(ModuleSignature { entries })
    }
}

fn find_directive(text: &str, directive: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(off) = text[from..].find(directive) {
        let pos = from + off;
        let end = pos + directive.len();
        let boundary_after = text[end..].starts_with(|c: char| c.is_whitespace());
        let boundary_before = pos == 0 || text[..pos].ends_with(|c: char| c.is_whitespace());
        if boundary_after && boundary_before {
            return Some(pos);
        }
        from = end;
    }
    None
}

fn strip_comments(ptx: &str) -> String {
    let mut out = String::with_capacity(ptx.len());
    let mut chars = ptx.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            for c in chars.by_ref() {
                if c == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut prev = ' ';
            for c in chars.by_ref() {
                if prev == '*' && c == '/' {
                    break;
                }
                prev = c;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_params(entry: &str, list: &str) -> Result<Vec<ParamKind>, GpuError> {
    let mut params = Vec::new();
    for decl in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let mut tokens = decl.split_whitespace();
        if tokens.next() != Some(".param") {
            return Err(GpuError::KernelLoad(format!(
                "entry {entry}: unsupported parameter declaration `{decl}`"
            )));
        }
        let ty = tokens.next().unwrap_or("");
        let kind = match ty {
            ".s32" | ".u32" | ".b32" => ParamKind::Int32,
            ".s64" | ".u64" | ".b64" => ParamKind::Int64,
            ".f32" => ParamKind::F32,
            ".f64" => ParamKind::F64,
            other => {
                return Err(GpuError::KernelLoad(format!(
                    "entry {entry}: unsupported parameter type `{other}` (supported: 32/64-bit integers, f32, f64, pointers)"
                )));
            }
        };
        // Array parameters (`.b8 name[16]`) are structs passed by value: unsupported.
        if decl.contains('[') {
            return Err(GpuError::KernelLoad(format!(
                "entry {entry}: by-value array/struct parameters are unsupported"
            )));
        }
        params.push(kind);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAXPY: &str = r#"
.version 7.0
.target sm_50
.address_size 64
// a comment mentioning .entry fake(
.visible .entry saxpy(
    .param .u64 saxpy_param_0,
    .param .u64 .ptr .global .align 4 saxpy_param_1,
    .param .f32 saxpy_param_2,
    .param .u32 saxpy_param_3
)
{ ret; }
.entry noargs
{ ret; }
"#;

    #[test]
    fn parses_entry_parameter_kinds_and_ignores_comments() {
        let sig = ModuleSignature::parse(SAXPY).unwrap();
        assert_eq!(
            sig.entry("saxpy").unwrap(),
            &[
                ParamKind::Int64,
                ParamKind::Int64,
                ParamKind::F32,
                ParamKind::Int32
            ]
        );
        assert_eq!(sig.entry("noargs").unwrap(), &[] as &[ParamKind]);
        assert!(sig.entry("fake").is_none());
    }

    #[test]
    fn refuses_ptx_it_could_read_differently_from_the_driver() {
        // A quoted `.file` name hiding a comment opener and a fake entry.
        let quoted = ".file 1 \"/*\"\n.visible .entry k(.param .u32 a) { ret; }\n/* \"*/\"";
        assert!(ModuleSignature::parse(quoted).is_err());
        // `.visible.entry` without a space: the driver sees an entry.
        let glued = ".visible.entry k(.param .u64 a) { ret; }";
        let err = ModuleSignature::parse(glued).unwrap_err().to_string();
        assert!(err.contains("whitespace-delimited"), "{err}");
        // A second entry of the same name.
        let twice = ".entry k(.param .u32 a) { ret; }\n.entry k(.param .u64 a) { ret; }";
        assert!(ModuleSignature::parse(twice).is_err());
    }

    #[test]
    fn rejects_ptx_without_entries_and_struct_params() {
        assert!(ModuleSignature::parse(".version 7.0").is_err());
        assert!(ModuleSignature::parse(".entry k(.param .align 8 .b8 s[16]) { ret; }").is_err());
        assert!(ModuleSignature::parse(".entry k(.param .u16 s) { ret; }").is_err());
    }
}
