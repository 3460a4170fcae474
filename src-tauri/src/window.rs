//! The console window (UI-4). It is made when opened and destroyed when closed, so the webview's
//! memory is released while the app lives on in the tray; `open` makes a new one each time.

use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

pub const LABEL: &str = "main";

/// Shows the window, making it if it does not exist. Failures are logged: the tray still works.
pub fn open<R: Runtime>(app: &AppHandle<R>) {
    if let Some(window) = app.get_webview_window(LABEL) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        return;
    }
    // Built on the main thread: creating a webview from a worker thread can deadlock on some
    // platforms, and menu/notification callbacks run on other threads.
    let handle = app.clone();
    let built = app.run_on_main_thread(move || {
        if handle.get_webview_window(LABEL).is_some() {
            return;
        }
        let result = WebviewWindowBuilder::new(&handle, LABEL, WebviewUrl::App("index.html".into()))
            .title("Understudy")
            .inner_size(1180.0, 780.0)
            .min_inner_size(640.0, 420.0)
            .build();
        match result {
            Ok(_) => tracing::info!("window opened"),
            Err(e) => tracing::error!("could not open the window: {e}"),
        }
    });
    if let Err(e) = built {
        tracing::error!("could not open the window: {e}");
    }
}

/// After the window (and its webview) is destroyed: hands the freed heap back to the system, so
/// the app's footprint in the tray drops instead of keeping the webview's peak (glibc keeps freed
/// memory in its arenas otherwise).
pub fn released() {
    tracing::info!("window closed: webview released");
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim has no preconditions; it only returns free pages.
        unsafe {
            malloc_trim(0);
        }
    }
}
