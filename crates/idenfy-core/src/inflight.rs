//! The first, in-process layer in front of recovery: one recovery per row at a time in
//! this process.
//!
//! A herd of tabs served by one replica would otherwise send every request on to the
//! Valkey lock (or, with Valkey down, to the store claim) at the same moment. Only one of
//! them can win there, so the others are turned away here, for free. The layer only saves
//! work: the lock and the store claim behind it still decide between replicas.

use std::{
    collections::HashSet,
    sync::{Mutex, PoisonError},
};

use crate::RowId;

/// The rows this process is recovering right now.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    rows: Mutex<HashSet<RowId>>,
}

impl InFlight {
    /// Marks `id` as being recovered here; `None` when it already is.
    pub(crate) fn enter(&self, id: &RowId) -> Option<InFlightGuard<'_>> {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        rows.insert(id.clone()).then(|| InFlightGuard {
            flight: self,
            id: id.clone(),
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Clears the row's mark when the recovery ends, however it ends (also on cancellation).
#[derive(Debug)]
pub(crate) struct InFlightGuard<'a> {
    flight: &'a InFlight,
    id: RowId,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.flight
            .rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;
    use crate::RowId;

    fn id(hex: &str) -> RowId {
        RowId::parse(hex).expect("valid id")
    }

    #[test]
    fn one_recovery_per_row_and_rows_are_independent() {
        let flight = InFlight::default();
        let a = id("65a1b2c3d4e5f60718293a4b");
        let b = id("65a1b2c3d4e5f60718293a4c");
        let first = flight.enter(&a).expect("free");
        assert!(flight.enter(&a).is_none(), "the same row is busy");
        let other = flight.enter(&b).expect("another row is not");
        drop(first);
        assert!(flight.enter(&a).is_some(), "free again once the first ends");
        drop(other);
        assert_eq!(flight.len(), 0, "nothing is left behind");
    }
}
