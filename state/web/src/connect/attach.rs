//! Attaching the page's storages to the manager, one per stored lifetime.

use gaesup_state::{StateError, StateManager};
use gaesup_state_core::{Lifetime, MemoryStorage, Storage};

use super::status::StatusWriter;
use crate::error::Result;
use crate::storage::{BrowserStorage, StorageArea};

/// Attaches the storage for `lifetime`: `custom`, or the browser's.
pub(super) fn attach(
    manager: StateManager,
    lifetime: Lifetime,
    custom: Option<Box<dyn Storage>>,
    writer: StatusWriter,
) -> Result<()> {
    let Some(area) = StorageArea::for_lifetime(lifetime) else {
        return Ok(());
    };
    let storage: Box<dyn Storage> = match custom {
        Some(storage) => storage,
        None => match BrowserStorage::open(area) {
            Ok(storage) => Box::new(storage),
            Err(err) => {
                writer.notice(format!(
                    "{} is unavailable ({err}); {lifetime} values are kept in this tab's memory only and will not survive a reload.",
                    area.name()
                ));
                return Ok(());
            }
        },
    };
    match manager.attach_storage(lifetime, storage) {
        Ok(reports) => {
            writer.load_reports(&reports);
            Ok(())
        }
        Err(StateError::Disposed) => Err(StateError::Disposed.into()),
        Err(err) => {
            // A storage that cannot even list its keys would also fail every
            // later `declare` (each loads from it). The manager has no way
            // to detach a storage, so an in-memory one takes its place:
            // the same outcome as a storage that was never there.
            manager.attach_storage(lifetime, Box::new(MemoryStorage::new()))?;
            writer.notice(format!(
                "{} could not be read ({err}); {lifetime} values are kept in this tab's memory only and will not survive a reload.",
                area.name()
            ));
            Ok(())
        }
    }
}
