//! A process-wide count of panics, on any thread or task. Tokio catches a panic in a spawned task
//! and reports it only to that task's join handle, which nobody may be awaiting (a server's
//! connection task, say); the runner compares the count before and after a run, so no panic in
//! anything a run started can end in a pass. The binary installs the hook first thing; a library
//! user who wants the same guarantee calls [`install`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, PoisonError};

static COUNT: AtomicU64 = AtomicU64::new(0);
static LAST: Mutex<String> = Mutex::new(String::new());
static INSTALL: Once = Once::new();

/// Counts every panic from now on (once per process; later calls do nothing). The previous hook
/// still runs, so the panic message is printed as usual.
pub fn install() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = payload_message(info.payload());
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            *LAST.lock().unwrap_or_else(PoisonError::into_inner) = format!("{message}{at}");
            COUNT.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// The message a panic carries (`panic!("...")` gives a `&str` or a `String`), for a hook or a
/// join handle that caught it.
pub fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Panics so far in this process (0 until [`install`] is called).
pub fn count() -> u64 {
    COUNT.load(Ordering::SeqCst)
}

/// The message of the latest panic, if any happened since `mark` (a [`count`] taken earlier).
pub fn since(mark: u64) -> Option<String> {
    (count() > mark).then(|| LAST.lock().unwrap_or_else(PoisonError::into_inner).clone())
}

/// Held (shared) by the unit tests that play runs, and (exclusively) by the one that plants a
/// panic: the count is process-wide, so a planted panic would end a run that overlaps it in error.
#[cfg(test)]
pub(crate) static TEST_PLANTS: std::sync::RwLock<()> = std::sync::RwLock::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_a_spawned_task_is_counted_with_its_message() {
        let _alone = TEST_PLANTS.write().unwrap_or_else(PoisonError::into_inner);
        install();
        let mark = count();
        let thread = std::thread::spawn(|| panic!("boom in a task"));
        assert!(thread.join().is_err());
        let message = since(mark).unwrap_or_default();
        assert!(message.contains("boom in a task"), "{message}");
        assert!(message.contains("panic_watch.rs"), "{message}");
    }
}
