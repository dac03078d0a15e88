//! Bakes a snapshot into a module: the fastest restore there is.
//!
//! Writing 16 MiB into a fresh instance on every call costs page faults and a
//! memcpy per restore. Instead, the snapshot's memory segments become extra
//! *active data segments* of the instrumented module, each memory's initial
//! size becomes its captured size, and each mutable global's initialiser
//! becomes its captured value. Wasmtime then turns those data segments into a
//! copy-on-write memory image once (at compile time, cached on disk with the
//! compiled module), and every instantiation maps it for free: a restored
//! instance costs what a cold instance costs, and runs no init.
//!
//! Correctness: the added segments are the diff against a *fresh instance*,
//! applied after the module's own active segments, so the initial memory is
//! exactly the captured memory; passive segments keep their indices (new
//! segments are appended and the data-count section updated). Not applicable
//! — the caller falls back to [`crate::capture::restore_state`] — when the
//! module has a start function (it would run again), or when captured state
//! lives in imported memories or globals (their initial values are the
//! host's).

use wasm_encoder::Encode;
use wasmparser::{Parser, Payload};

use crate::error::SnapshotError;
use crate::instrument::{InstrumentedModule, read_leb_u32};
use crate::state::{GlobalValue, InstanceState};

const GLOBAL_SECTION: u8 = 6;
const MEMORY_SECTION: u8 = 5;
const DATA_SECTION: u8 = 11;
const DATA_COUNT_SECTION: u8 = 12;

/// The instrumented module with `state` baked in, or `None` when baking does
/// not apply (see the module docs).
pub fn bake(
    module: &InstrumentedModule,
    state: &InstanceState,
) -> Result<Option<Vec<u8>>, SnapshotError> {
    let layout = &module.layout;
    let imported_state = layout
        .memories
        .iter()
        .any(|m| m.index < layout.memory_imports)
        || layout
            .globals
            .iter()
            .any(|g| g.index < layout.global_imports);
    if layout.has_start || state.full_image || imported_state {
        return Ok(None);
    }
    let bad = |e: wasmparser::BinaryReaderError| SnapshotError::InvalidModule(e.to_string());
    let wasm = &module.wasm;

    // New data segments, in memory order.
    let mut extra_segments = Vec::new();
    let mut memory64 = vec![false; state.memories.len()];
    let mut sections: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut data_written = false;

    // First pass: learn memory64-ness (needed to encode segment offsets).
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::MemorySection(reader) = payload.map_err(bad)? {
            for (i, memory) in reader.into_iter().enumerate() {
                let memory = memory.map_err(bad)?;
                let index = layout.memory_imports as usize + i;
                if let Some(pos) = state
                    .memories
                    .iter()
                    .position(|m| m.index as usize == index)
                {
                    memory64[pos] = memory.memory64;
                }
            }
        }
    }
    for (pos, image) in state.memories.iter().enumerate() {
        for segment in &image.segments {
            let mut entry = Vec::with_capacity(segment.bytes.len() + 16);
            if image.index == 0 {
                entry.push(0x00);
            } else {
                entry.push(0x02);
                image.index.encode(&mut entry);
            }
            let offset = if memory64[pos] {
                wasm_encoder::ConstExpr::i64_const(segment.offset as i64)
            } else {
                // i32.const is signed; offsets ≥ 2 GiB wrap, as the spec reads them unsigned.
                wasm_encoder::ConstExpr::i32_const(segment.offset as u32 as i32)
            };
            offset.encode(&mut entry);
            segment.bytes.as_slice().encode(&mut entry);
            extra_segments.push(entry);
        }
    }
    let extra = u32::try_from(extra_segments.len())
        .map_err(|_| SnapshotError::Unsupported("too many memory segments".into()))?;

    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(bad)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        let content = &wasm[range.clone()];
        let rewritten = match payload {
            Payload::MemorySection(reader) => {
                let mut out = Vec::new();
                reader.count().encode(&mut out);
                for (i, memory) in reader.into_iter().enumerate() {
                    let memory = memory.map_err(bad)?;
                    let index = layout.memory_imports as usize + i;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    let minimum = state
                        .memories
                        .iter()
                        .find(|m| m.index as usize == index)
                        .map_or(memory.initial, |m| m.size_bytes / page);
                    wasm_encoder::MemoryType {
                        minimum,
                        maximum: memory.maximum,
                        memory64: memory.memory64,
                        shared: memory.shared,
                        page_size_log2: memory.page_size_log2,
                    }
                    .encode(&mut out);
                }
                Some((MEMORY_SECTION, out))
            }
            Payload::GlobalSection(reader) => {
                let mut out = Vec::new();
                reader.count().encode(&mut out);
                let entries: Vec<_> = reader
                    .into_iter_with_offsets()
                    .collect::<Result<_, _>>()
                    .map_err(bad)?;
                for (k, (start, global)) in entries.iter().enumerate() {
                    let end = entries.get(k + 1).map_or(range.end, |(next, _)| *next);
                    let index = layout.global_imports + k as u32;
                    let captured = state.globals.iter().find(|g| g.index == index);
                    match captured {
                        Some(g) => {
                            let (val_type, init) = const_of(g.value);
                            wasm_encoder::GlobalType {
                                val_type,
                                mutable: true,
                                shared: global.ty.shared,
                            }
                            .encode(&mut out);
                            init.encode(&mut out);
                        }
                        None => out.extend_from_slice(&wasm[*start..end]),
                    }
                }
                Some((GLOBAL_SECTION, out))
            }
            Payload::DataSection(_) => {
                data_written = true;
                let (count, len) = read_leb_u32(content)
                    .ok_or_else(|| SnapshotError::InvalidModule("bad data section".into()))?;
                Some((
                    DATA_SECTION,
                    data_section(Some((count, &content[len..])), &extra_segments, extra)?,
                ))
            }
            Payload::DataCountSection { count, .. } => {
                let mut out = Vec::new();
                (count + extra).encode(&mut out);
                Some((DATA_COUNT_SECTION, out))
            }
            _ => None,
        };
        match rewritten {
            Some(section) => sections.push(section),
            None => sections.push((id, content.to_vec())),
        }
    }
    // The data section is the last non-custom section: a module without one
    // gets it at the end.
    if !data_written {
        sections.push((DATA_SECTION, data_section(None, &extra_segments, extra)?));
    }

    let mut out = wasm_encoder::Module::new();
    for (id, data) in &sections {
        out.section(&wasm_encoder::RawSection { id: *id, data });
    }
    Ok(Some(out.finish()))
}

fn data_section(
    old: Option<(u32, &[u8])>,
    extra: &[Vec<u8>],
    extra_count: u32,
) -> Result<Vec<u8>, SnapshotError> {
    let (count, entries) = old.unwrap_or((0, &[]));
    let total = count
        .checked_add(extra_count)
        .ok_or_else(|| SnapshotError::Unsupported("too many data segments".into()))?;
    let mut out = Vec::with_capacity(entries.len() + extra.iter().map(Vec::len).sum::<usize>() + 8);
    total.encode(&mut out);
    out.extend_from_slice(entries);
    for e in extra {
        out.extend_from_slice(e);
    }
    Ok(out)
}

fn const_of(value: GlobalValue) -> (wasm_encoder::ValType, wasm_encoder::ConstExpr) {
    use wasm_encoder::{ConstExpr, Ieee32, Ieee64, ValType};
    match value {
        GlobalValue::I32(v) => (ValType::I32, ConstExpr::i32_const(v)),
        GlobalValue::I64(v) => (ValType::I64, ConstExpr::i64_const(v)),
        GlobalValue::F32(bits) => (ValType::F32, ConstExpr::f32_const(Ieee32::new(bits))),
        GlobalValue::F64(bits) => (ValType::F64, ConstExpr::f64_const(Ieee64::new(bits))),
        GlobalValue::V128(bits) => (ValType::V128, ConstExpr::v128_const(bits as i128)),
    }
}
