//! Makes every piece of instance state reachable from the host.
//!
//! Wasmtime's public API only reaches *exported* memories and globals. So
//! before a module is instantiated for snapshotting we add exports under
//! reserved names — `__tw_snapshot_memory_N` for every memory and
//! `__tw_snapshot_global_N` for every mutable global (N = index in the
//! module's index space, imports included). Adding exports changes nothing
//! about what the code does; every other section is copied byte for byte.
//!
//! The rewrite is deterministic, so the same original module always yields the
//! same instrumented module (and the same compile-cache entry).

use std::ops::Range;

use wasm_encoder::Encode;
use wasmparser::{Encoding, ExternalKind, Operator, Parser, Payload, TypeRef, ValType};

use crate::error::SnapshotError;
use crate::state::ModuleHash;

/// Prefix of every export this crate adds; modules may not use it themselves.
pub const RESERVED_EXPORT_PREFIX: &str = "__tw_snapshot_";
const EXPORT_SECTION_ID: u8 = 7;
const EXPORT_KIND_MEMORY: u8 = 0x02;
const EXPORT_KIND_GLOBAL: u8 = 0x03;

/// Value type of a captured global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalKind {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `v128`.
    V128,
}

/// A memory the snapshot captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySlot {
    /// Index in the memory index space.
    pub index: u32,
    /// Export name it is reachable under in the instrumented module.
    pub export: String,
}

/// A mutable global the snapshot captures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalSlot {
    /// Index in the global index space.
    pub index: u32,
    /// Its value type.
    pub kind: GlobalKind,
    /// Export name it is reachable under in the instrumented module.
    pub export: String,
}

/// Which state an instance of a module has, and where to find it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateLayout {
    /// Every memory, ascending by index.
    pub memories: Vec<MemorySlot>,
    /// Every mutable global, ascending by index.
    pub globals: Vec<GlobalSlot>,
    /// The module has a start function: a fresh instance is not the static
    /// image, so snapshots store whole memories.
    pub has_start: bool,
    /// How many memories are imported (indices below this are imports).
    pub memory_imports: u32,
    /// How many globals are imported (indices below this are imports).
    pub global_imports: u32,
}

/// An original module plus its instrumented rewrite.
#[derive(Debug, Clone)]
pub struct InstrumentedModule {
    /// BLAKE3 of the original Wasm binary (WAT text is converted first), the
    /// same hash the executor reports as `CompiledFunction::blake3_hex`.
    pub original: ModuleHash,
    /// The instrumented Wasm binary: compile and instantiate this one.
    pub wasm: Vec<u8>,
    /// Where the state lives.
    pub layout: StateLayout,
}

/// Instruments `module` (Wasm binary or WAT text).
///
/// Refuses modules whose state a snapshot cannot carry faithfully: shared
/// memories, mutable reference-typed globals, code that mutates tables
/// (`table.set/grow/fill/copy/init`, `elem.drop`), components, and modules
/// that already export names under [`RESERVED_EXPORT_PREFIX`].
pub fn instrument(module: &[u8]) -> Result<InstrumentedModule, SnapshotError> {
    let binary = if module.starts_with(b"\0asm") {
        std::borrow::Cow::Borrowed(module)
    } else {
        std::borrow::Cow::Owned(
            wat::parse_bytes(module)
                .map_err(|e| SnapshotError::InvalidModule(e.to_string()))?
                .into_owned(),
        )
    };
    let wasm = binary.as_ref();
    let original = ModuleHash::of(wasm);
    wasmparser::Validator::new()
        .validate_all(wasm)
        .map_err(|e| SnapshotError::InvalidModule(e.to_string()))?;

    let scan = scan(wasm).map_err(|e| SnapshotError::InvalidModule(e.to_string()))?;
    if let Some(reason) = scan.unsupported {
        return Err(SnapshotError::Unsupported(reason));
    }

    let mut layout = StateLayout {
        has_start: scan.has_start,
        memory_imports: scan.memory_imports,
        global_imports: scan.global_imports,
        ..StateLayout::default()
    };
    let mut added: Vec<(String, u8, u32)> = Vec::new();
    for index in 0..scan.memory_count {
        let export = format!("{RESERVED_EXPORT_PREFIX}memory_{index}");
        added.push((export.clone(), EXPORT_KIND_MEMORY, index));
        layout.memories.push(MemorySlot { index, export });
    }
    for (index, kind) in scan.mutable_globals {
        let export = format!("{RESERVED_EXPORT_PREFIX}global_{index}");
        added.push((export.clone(), EXPORT_KIND_GLOBAL, index));
        layout.globals.push(GlobalSlot {
            index,
            kind,
            export,
        });
    }

    let mut out = wasm_encoder::Module::new();
    let mut export_written = false;
    let new_exports = |old: Option<&[u8]>| -> Result<Vec<u8>, SnapshotError> {
        let (old_count, old_entries) = match old {
            Some(content) => read_leb_u32(content)
                .map(|(count, len)| (count, &content[len..]))
                .ok_or_else(|| SnapshotError::InvalidModule("bad export section".into()))?,
            None => (0, &[][..]),
        };
        let mut data = Vec::new();
        (old_count + added.len() as u32).encode(&mut data);
        data.extend_from_slice(old_entries);
        for (name, kind, index) in &added {
            name.as_str().encode(&mut data);
            data.push(*kind);
            index.encode(&mut data);
        }
        Ok(data)
    };
    for (id, range) in &scan.sections {
        let content = &wasm[range.clone()];
        if *id == EXPORT_SECTION_ID {
            let data = new_exports(Some(content))?;
            out.section(&wasm_encoder::RawSection {
                id: EXPORT_SECTION_ID,
                data: &data,
            });
            export_written = true;
            continue;
        }
        if !export_written && section_rank(*id).is_some_and(|r| r > EXPORT_RANK) {
            let data = new_exports(None)?;
            out.section(&wasm_encoder::RawSection {
                id: EXPORT_SECTION_ID,
                data: &data,
            });
            export_written = true;
        }
        out.section(&wasm_encoder::RawSection {
            id: *id,
            data: content,
        });
    }
    if !export_written {
        let data = new_exports(None)?;
        out.section(&wasm_encoder::RawSection {
            id: EXPORT_SECTION_ID,
            data: &data,
        });
    }
    Ok(InstrumentedModule {
        original,
        wasm: out.finish(),
        layout,
    })
}

/// Position of a section id in the mandatory core-module order (custom
/// sections, id 0, may appear anywhere and have none).
fn section_rank(id: u8) -> Option<u8> {
    // type, import, function, table, memory, tag, global, export, start,
    // element, datacount, code, data
    const ORDER: [u8; 13] = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11];
    ORDER.iter().position(|&x| x == id).map(|p| p as u8)
}
const EXPORT_RANK: u8 = 7;

#[derive(Default)]
struct Scan {
    sections: Vec<(u8, Range<usize>)>,
    memory_count: u32,
    memory_imports: u32,
    global_imports: u32,
    mutable_globals: Vec<(u32, GlobalKind)>,
    has_start: bool,
    unsupported: Option<String>,
}

fn scan(wasm: &[u8]) -> wasmparser::Result<Scan> {
    let mut s = Scan::default();
    let mut global_index = 0u32;
    let mut function_index = 0u32;
    let mut imported_functions = 0u32;
    let mut refuse = |s: &mut Scan, why: String| {
        if s.unsupported.is_none() {
            s.unsupported = Some(why);
        }
    };
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload?;
        if let Some((id, range)) = payload.as_section() {
            s.sections.push((id, range));
        }
        match payload {
            Payload::Version { encoding, .. } if encoding != Encoding::Module => {
                refuse(
                    &mut s,
                    "components are not supported, only core modules".into(),
                );
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import?.ty {
                        TypeRef::Memory(m) => {
                            if m.shared {
                                refuse(&mut s, "shared memories are not supported".into());
                            }
                            s.memory_count += 1;
                            s.memory_imports += 1;
                        }
                        TypeRef::Global(g) => {
                            note_global(&mut s, global_index, g, &mut refuse);
                            global_index += 1;
                            s.global_imports += 1;
                        }
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_functions += 1,
                        TypeRef::Table(_) | TypeRef::Tag(_) => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    if memory?.shared {
                        refuse(&mut s, "shared memories are not supported".into());
                    }
                    s.memory_count += 1;
                }
            }
            Payload::GlobalSection(reader) => {
                for global in reader {
                    note_global(&mut s, global_index, global?.ty, &mut refuse);
                    global_index += 1;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    if export.name.starts_with(RESERVED_EXPORT_PREFIX) {
                        refuse(
                            &mut s,
                            format!(
                                "export `{}` uses the reserved prefix `{RESERVED_EXPORT_PREFIX}`",
                                export.name
                            ),
                        );
                    }
                    let _: ExternalKind = export.kind;
                }
            }
            Payload::StartSection { .. } => s.has_start = true,
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    let op = ops.read()?;
                    let name = match op {
                        Operator::TableSet { .. } => "table.set",
                        Operator::TableGrow { .. } => "table.grow",
                        Operator::TableFill { .. } => "table.fill",
                        Operator::TableCopy { .. } => "table.copy",
                        Operator::TableInit { .. } => "table.init",
                        Operator::ElemDrop { .. } => "elem.drop",
                        _ => continue,
                    };
                    refuse(
                        &mut s,
                        format!(
                            "function {} uses {name}: table contents are not captured, so a \
                             restored instance could differ",
                            imported_functions + function_index
                        ),
                    );
                    break;
                }
                function_index += 1;
            }
            _ => {}
        }
    }
    Ok(s)
}

fn note_global(
    s: &mut Scan,
    index: u32,
    ty: wasmparser::GlobalType,
    refuse: &mut impl FnMut(&mut Scan, String),
) {
    if !ty.mutable {
        // Immutable globals are re-derived identically by instantiation.
        return;
    }
    let kind = match ty.content_type {
        ValType::I32 => GlobalKind::I32,
        ValType::I64 => GlobalKind::I64,
        ValType::F32 => GlobalKind::F32,
        ValType::F64 => GlobalKind::F64,
        ValType::V128 => GlobalKind::V128,
        ValType::Ref(_) => {
            refuse(
                s,
                format!("mutable global {index} holds a reference; references are not captured"),
            );
            return;
        }
    };
    s.mutable_globals.push((index, kind));
}

pub(crate) fn read_leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut result = 0u32;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        result |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((result, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instrumented_module_exports_every_memory_and_mutable_global() {
        let wat = r#"(module
            (import "env" "g" (global $imp (mut i32)))
            (memory 1)
            (global $a (mut i64) (i64.const 5))
            (global $b f32 (f32.const 1))
            (global $c (mut f64) (f64.const 2))
            (func (export "f") (result i32) (i32.const 1)))"#;
        let m = instrument(wat.as_bytes()).expect("instruments");
        let names: Vec<_> = m.layout.globals.iter().map(|g| g.index).collect();
        assert_eq!(names, vec![0, 1, 3]);
        assert_eq!(m.layout.memories.len(), 1);
        wasmparser::Validator::new()
            .validate_all(&m.wasm)
            .expect("instrumented module validates");
        let exports: Vec<String> = Parser::new(0)
            .parse_all(&m.wasm)
            .filter_map(|p| match p {
                Ok(Payload::ExportSection(r)) => {
                    Some(r.into_iter().map(|e| e.map(|e| e.name.to_string())))
                }
                _ => None,
            })
            .flatten()
            .collect::<Result<_, _>>()
            .expect("exports parse");
        assert!(exports.contains(&"f".to_string()));
        assert!(exports.contains(&"__tw_snapshot_memory_0".to_string()));
        assert!(exports.contains(&"__tw_snapshot_global_3".to_string()));
    }

    #[test]
    fn module_without_exports_gets_an_export_section_in_the_right_place() {
        let wat = r#"(module (memory 1) (global (mut i32) (i32.const 0))
            (func $s) (start $s) (data (i32.const 0) "hi"))"#;
        let m = instrument(wat.as_bytes()).expect("instruments");
        assert!(m.layout.has_start);
        wasmparser::Validator::new()
            .validate_all(&m.wasm)
            .expect("instrumented module validates");
    }

    #[test]
    fn table_mutation_and_reserved_names_are_refused() {
        let table = r#"(module (table 1 funcref) (func $f) (elem declare func $f)
            (func (table.set (i32.const 0) (ref.func $f))))"#;
        assert!(matches!(
            instrument(table.as_bytes()),
            Err(SnapshotError::Unsupported(m)) if m.contains("table.set")
        ));
        let reserved = r#"(module (func (export "__tw_snapshot_x")))"#;
        assert!(matches!(
            instrument(reserved.as_bytes()),
            Err(SnapshotError::Unsupported(_))
        ));
    }

    #[test]
    fn empty_module_instruments() {
        let m = instrument(b"\0asm\x01\0\0\0").expect("instruments");
        assert!(m.layout.memories.is_empty() && m.layout.globals.is_empty());
    }
}
