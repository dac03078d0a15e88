//! The one extension point for host interfaces: the GPU today, `wasi:http`,
//! `wasi-nn` and more later plug into the engine here, and the binary wires
//! them into [`crate::EngineConfig::host_interfaces`]; the engine itself
//! knows none of them.
//!
//! An interface does two things: it defines its imports in the engine's
//! linker once, when the [`crate::Executor`] is built, and it makes its
//! per-store state (a GPU session, say) the first time a guest calls one of
//! its imports in a store. That state lives in the store's [`HostState`] and
//! is dropped with the store when the invocation ends — returned, trapped or
//! cut off at its deadline — so an interface frees its resources in `Drop`.
//! A store whose guest never calls an interface's imports never makes its
//! state and pays nothing for it.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;

use wasmtime::Linker;

use crate::HostState;

/// A set of host functions guests may import, plugged into the engine
/// through [`crate::EngineConfig::host_interfaces`] (wrapped in a
/// [`HostPlugin`]).
pub trait HostInterface: Send + Sync + 'static {
    /// What one store keeps for this interface (e.g. a GPU session); made on
    /// the guest's first call into the interface, dropped with the store.
    type StoreState: Send + 'static;

    /// Short name for logs and errors, such as `"GPU"`.
    fn name(&self) -> &'static str;

    /// Defines this interface's imports in `linker`, once per engine. Host
    /// functions reach their per-store state through
    /// [`HostState::host_state_mut`] with `slot`.
    fn add_to_linker(
        &self,
        linker: &mut Linker<HostState>,
        slot: HostSlot<Self::StoreState>,
    ) -> wasmtime::Result<()>;

    /// The state of one store of `tenant`, made lazily (see the trait docs).
    fn new_store_state(&self, tenant: &str) -> Self::StoreState;
}

/// An interface behind an `Arc`, so whoever plugs it in can keep a handle.
impl<I: HostInterface> HostInterface for Arc<I> {
    type StoreState = I::StoreState;

    fn name(&self) -> &'static str {
        (**self).name()
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<HostState>,
        slot: HostSlot<Self::StoreState>,
    ) -> wasmtime::Result<()> {
        (**self).add_to_linker(linker, slot)
    }

    fn new_store_state(&self, tenant: &str) -> Self::StoreState {
        (**self).new_store_state(tenant)
    }
}

/// Where an interface's per-store state lives in every [`HostState`] of one
/// engine; handed to [`HostInterface::add_to_linker`]. Only the engine makes
/// slots, so the slot's type is always the type its interface stores; a slot
/// is meant for the stores of the engine that made it.
pub struct HostSlot<S> {
    index: usize,
    _state: PhantomData<fn() -> S>,
}

impl<S> Clone for HostSlot<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for HostSlot<S> {}

impl<S> std::fmt::Debug for HostSlot<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostSlot").field(&self.index).finish()
    }
}

/// A [`HostInterface`] ready to plug into an engine. Cheap to clone.
#[derive(Clone)]
pub struct HostPlugin(Arc<dyn ErasedInterface>);

impl HostPlugin {
    /// Wraps `interface` for [`crate::EngineConfig::host_interfaces`].
    pub fn new<I: HostInterface>(interface: I) -> Self {
        Self(Arc::new(interface))
    }

    /// The interface's name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// Links the interface as the engine's `index`-th one.
    pub(crate) fn link(
        &self,
        linker: &mut Linker<HostState>,
        index: usize,
    ) -> wasmtime::Result<()> {
        self.0.link(linker, index)
    }

    /// A fresh per-store state for `tenant`.
    pub(crate) fn new_store_state(&self, tenant: &str) -> Box<dyn Any + Send> {
        self.0.new_store_state(tenant)
    }
}

impl<I: HostInterface> From<I> for HostPlugin {
    fn from(interface: I) -> Self {
        Self::new(interface)
    }
}

impl std::fmt::Debug for HostPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostPlugin").field(&self.name()).finish()
    }
}

/// [`HostInterface`] without its associated type, so that an engine can hold
/// interfaces of different kinds in one list.
trait ErasedInterface: Send + Sync {
    fn name(&self) -> &'static str;
    fn link(&self, linker: &mut Linker<HostState>, index: usize) -> wasmtime::Result<()>;
    fn new_store_state(&self, tenant: &str) -> Box<dyn Any + Send>;
}

impl<I: HostInterface> ErasedInterface for I {
    fn name(&self) -> &'static str {
        HostInterface::name(self)
    }

    fn link(&self, linker: &mut Linker<HostState>, index: usize) -> wasmtime::Result<()> {
        let slot = HostSlot {
            index,
            _state: PhantomData,
        };
        self.add_to_linker(linker, slot)
    }

    fn new_store_state(&self, tenant: &str) -> Box<dyn Any + Send> {
        Box::new(HostInterface::new_store_state(self, tenant))
    }
}

/// The per-store states of an engine's host interfaces, by slot.
pub(crate) struct StoreStates {
    /// The engine's interfaces (`None` when it has none): they make the
    /// states on first use.
    interfaces: Option<Arc<[HostPlugin]>>,
    /// One entry per interface once any is used; empty (no allocation) until
    /// then.
    states: Vec<Option<Box<dyn Any + Send>>>,
}

impl StoreStates {
    pub(crate) fn new(interfaces: Option<Arc<[HostPlugin]>>) -> Self {
        Self {
            interfaces,
            states: Vec::new(),
        }
    }

    /// `slot`'s state, made by its interface on first use.
    pub(crate) fn get_or_make<S: Send + 'static>(
        &mut self,
        slot: HostSlot<S>,
        tenant: &str,
    ) -> &mut S {
        let interfaces = self
            .interfaces
            .as_ref()
            .expect("host functions are only linked into engines that have host interfaces");
        if self.states.is_empty() {
            self.states.resize_with(interfaces.len(), || None);
        }
        self.states[slot.index]
            .get_or_insert_with(|| interfaces[slot.index].new_store_state(tenant))
            .downcast_mut()
            .expect("a slot holds the state type of the interface it was made for")
    }

    /// `slot`'s state, if the guest used its interface in this store.
    pub(crate) fn get<S: Send + 'static>(&self, slot: HostSlot<S>) -> Option<&S> {
        self.states.get(slot.index)?.as_ref()?.downcast_ref()
    }
}
