//! Capture and restore of instance state through Wasmtime's public API.
//!
//! Works on any `Store`/`Instance` pair instantiated from an
//! [`InstrumentedModule`](crate::InstrumentedModule); the executor-facing
//! wrappers live in [`crate::live`].
//!
//! Memories are compared with a *baseline*: a fresh instance of the same
//! module (cheap under copy-on-write). Only 4 KiB chunks that differ are
//! stored, as coalesced runs. When the module has a start function the fresh
//! instance is not a reliable baseline (the start function could behave
//! differently next time), so the baseline is all-zero memory instead and a
//! restore zero-fills every byte the snapshot does not cover: exact either way.

use wasmtime::{AsContext, AsContextMut, Instance, Memory, Val};

use crate::error::SnapshotError;
use crate::instrument::{GlobalKind, StateLayout};
use crate::state::{GlobalImage, GlobalValue, InstanceState, MemoryImage, MemorySegment};

/// Granularity of the memory diff.
pub const DIFF_CHUNK: usize = 4096;

/// Captures the state of `live`. `baseline` is a fresh, never-called instance
/// of the same instrumented module; it is ignored (and may be `None`) when the
/// module has a start function.
pub fn capture_state<L: AsContextMut, B: AsContextMut>(
    mut live_store: L,
    live: &Instance,
    mut baseline: Option<(B, &Instance)>,
    layout: &StateLayout,
) -> Result<InstanceState, SnapshotError> {
    let full_image = layout.has_start;
    if !full_image && baseline.is_none() && !layout.memories.is_empty() {
        return Err(SnapshotError::LayoutMismatch(
            "a baseline instance is required for modules without a start function".into(),
        ));
    }
    let mut memories = Vec::with_capacity(layout.memories.len());
    for slot in &layout.memories {
        let memory = memory_of(&mut live_store, live, &slot.export)?;
        let data = memory.data(live_store.as_context());
        let segments = match (&mut baseline, full_image) {
            (Some((base_store, base_instance)), false) => {
                let base = memory_of(base_store, base_instance, &slot.export)?;
                diff(data, base.data(base_store.as_context()))
            }
            _ => diff(data, &[]),
        };
        memories.push(MemoryImage {
            index: slot.index,
            size_bytes: data.len() as u64,
            segments,
        });
    }
    let mut globals = Vec::with_capacity(layout.globals.len());
    for slot in &layout.globals {
        let global = live
            .get_global(&mut live_store, &slot.export)
            .ok_or_else(|| missing(&slot.export))?;
        let value = match (global.get(&mut live_store), slot.kind) {
            (Val::I32(v), GlobalKind::I32) => GlobalValue::I32(v),
            (Val::I64(v), GlobalKind::I64) => GlobalValue::I64(v),
            (Val::F32(v), GlobalKind::F32) => GlobalValue::F32(v),
            (Val::F64(v), GlobalKind::F64) => GlobalValue::F64(v),
            (Val::V128(v), GlobalKind::V128) => GlobalValue::V128(v.as_u128()),
            (other, kind) => {
                return Err(SnapshotError::LayoutMismatch(format!(
                    "global `{}` holds {:?}, the layout says {kind:?}",
                    slot.export,
                    other.ty(&live_store)
                )));
            }
        };
        globals.push(GlobalImage {
            index: slot.index,
            value,
        });
    }
    Ok(InstanceState {
        full_image,
        memories,
        globals,
    })
}

/// Writes `state` into `fresh`, a never-called instance of the same
/// instrumented module: grows memories to their captured sizes, writes the
/// stored bytes (zero-filling the rest for full images), sets globals.
pub fn restore_state(
    mut store: impl AsContextMut,
    fresh: &Instance,
    layout: &StateLayout,
    state: &InstanceState,
) -> Result<(), SnapshotError> {
    let memory_indices: Vec<u32> = layout.memories.iter().map(|m| m.index).collect();
    let state_indices: Vec<u32> = state.memories.iter().map(|m| m.index).collect();
    if memory_indices != state_indices {
        return Err(SnapshotError::LayoutMismatch(format!(
            "module has memories {memory_indices:?}, the snapshot {state_indices:?}"
        )));
    }
    let global_indices: Vec<u32> = layout.globals.iter().map(|g| g.index).collect();
    let state_globals: Vec<u32> = state.globals.iter().map(|g| g.index).collect();
    if global_indices != state_globals {
        return Err(SnapshotError::LayoutMismatch(format!(
            "module has mutable globals {global_indices:?}, the snapshot {state_globals:?}"
        )));
    }

    for (slot, image) in layout.memories.iter().zip(&state.memories) {
        let memory = memory_of(&mut store, fresh, &slot.export)?;
        let current = memory.data_size(&store) as u64;
        if image.size_bytes < current {
            return Err(SnapshotError::Restore(format!(
                "memory {} is {current} bytes in a fresh instance but {} in the snapshot",
                slot.index, image.size_bytes
            )));
        }
        if image.size_bytes > current {
            let page = memory.page_size(&store);
            let delta = image.size_bytes - current;
            if !delta.is_multiple_of(page) {
                return Err(SnapshotError::Malformed(format!(
                    "memory {} size {} is not a multiple of its page size {page}",
                    slot.index, image.size_bytes
                )));
            }
            memory.grow(&mut store, delta / page).map_err(|e| {
                SnapshotError::Restore(format!(
                    "memory {} cannot grow to {} bytes (the memory limit is lower?): {e}",
                    slot.index, image.size_bytes
                ))
            })?;
        }
        let data = memory.data_mut(&mut store);
        let mut cursor = 0usize;
        for segment in &image.segments {
            let start = usize::try_from(segment.offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(segment.bytes.len());
            if start < cursor || end > data.len() {
                return Err(SnapshotError::Malformed(format!(
                    "segment {start}..{end} overlaps another or lies outside memory {}",
                    slot.index
                )));
            }
            if state.full_image {
                zero(&mut data[cursor..start]);
            }
            data[start..end].copy_from_slice(&segment.bytes);
            cursor = end;
        }
        if state.full_image {
            let len = data.len();
            zero(&mut data[cursor.min(len)..]);
        }
    }

    for (slot, image) in layout.globals.iter().zip(&state.globals) {
        let global = fresh
            .get_global(&mut store, &slot.export)
            .ok_or_else(|| missing(&slot.export))?;
        let value = match (image.value, slot.kind) {
            (GlobalValue::I32(v), GlobalKind::I32) => Val::I32(v),
            (GlobalValue::I64(v), GlobalKind::I64) => Val::I64(v),
            (GlobalValue::F32(v), GlobalKind::F32) => Val::F32(v),
            (GlobalValue::F64(v), GlobalKind::F64) => Val::F64(v),
            (GlobalValue::V128(v), GlobalKind::V128) => Val::V128(v.into()),
            (value, kind) => {
                return Err(SnapshotError::LayoutMismatch(format!(
                    "global {} is {kind:?} in the module, the snapshot holds {value:?}",
                    slot.index
                )));
            }
        };
        global
            .set(&mut store, value)
            .map_err(|e| SnapshotError::Restore(format!("global {}: {e}", slot.index)))?;
    }
    Ok(())
}

/// Zero-fills only what is not already zero: untouched pages of a fresh
/// copy-on-write memory stay unmapped.
fn zero(bytes: &mut [u8]) {
    for chunk in bytes.chunks_mut(DIFF_CHUNK) {
        if chunk.iter().any(|&b| b != 0) {
            chunk.fill(0);
        }
    }
}

/// Coalesced runs of `DIFF_CHUNK`-sized chunks of `live` that differ from
/// `base` (bytes past the end of `base` compare with zero).
pub fn diff(live: &[u8], base: &[u8]) -> Vec<MemorySegment> {
    let mut segments: Vec<MemorySegment> = Vec::new();
    let mut run: Option<usize> = None;
    let mut offset = 0usize;
    for chunk in live.chunks(DIFF_CHUNK) {
        let end = offset + chunk.len();
        let same = match base.get(offset..end) {
            Some(b) => b == chunk,
            None => {
                // Past the baseline's end (the memory grew): compare with zero.
                let overlap = base.len().saturating_sub(offset).min(chunk.len());
                let (head, tail) = chunk.split_at(overlap);
                let head_same = overlap == 0 || base.get(offset..offset + overlap) == Some(head);
                head_same && tail.iter().all(|&b| b == 0)
            }
        };
        match (same, run) {
            (false, None) => run = Some(offset),
            (true, Some(start)) => {
                segments.push(MemorySegment {
                    offset: start as u64,
                    bytes: live[start..offset].to_vec(),
                });
                run = None;
            }
            _ => {}
        }
        offset = end;
    }
    if let Some(start) = run {
        segments.push(MemorySegment {
            offset: start as u64,
            bytes: live[start..].to_vec(),
        });
    }
    segments
}

fn memory_of(
    store: &mut impl AsContextMut,
    instance: &Instance,
    export: &str,
) -> Result<Memory, SnapshotError> {
    instance
        .get_memory(&mut *store, export)
        .ok_or_else(|| missing(export))
}

fn missing(export: &str) -> SnapshotError {
    SnapshotError::LayoutMismatch(format!(
        "instance has no export `{export}`: was it instantiated from the instrumented module?"
    ))
}
