//! Files on disk, in one place.
//!
//! - [`DataDir`] owns the layout of the data directory: every crate asks it
//!   for a path instead of joining names of its own, so the store, the
//!   snapshot directory, the caches, the keys and backup/restore agree on
//!   where things are and with which permissions they are created.
//! - [`durable`] is the one way a file is written so that a crash leaves the
//!   old content or the new, never a torn file: a temp file in the same
//!   directory (named so that sweepers recognise it), fsync, rename over the
//!   final name, fsync of the directory.
//! - [`DataDir::load_or_create_key`] reads or creates the 32-byte secrets the
//!   server keeps in the data directory.
//!
//! What is not here: what the files contain (each owner's format), and the
//! audit log (append-only, written by the gateway).

pub mod durable;
mod layout;

pub use layout::{DataDir, KeyError, Secret, names};
