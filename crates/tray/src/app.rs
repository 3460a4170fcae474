//! The tray process: tao's event loop on the main thread (GTK's on Linux) owns the tray icon and
//! its menu; a tokio runtime runs everything that waits — the node (`host`), the status poll,
//! the event follower, the followed sites (`remote`), the clicks' requests, the window process.
//! Tasks reach the main thread only through the loop's proxy (`UserEvent`).
//!
//! Architecture invariant: nothing here decides. Every question and every action goes through
//! the node's one admin handler (`Host::request`) or a site's server, exactly as the CLI and the
//! HTTPS admin API do; the pure modules (`model`, `coalesce`) turn their JSON into labels and
//! notices.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tray_icon::menu::MenuEvent;

use crate::host::{self, Host};
use crate::instance::{self, Launch};
use crate::model::{Action, MenuModel};
use crate::notify::{self, Mute};
use crate::tray::{Flags, Tray};
use crate::window::WindowProcess;
use crate::{autostart, coalesce, remote, settings, sites};

/// How often the tray reads the status (UI-3: the menu follows every change within a second).
const STATUS_POLL: Duration = Duration::from_millis(500);
/// How long Quit waits for the node to stop cleanly.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How long Quit waits for the window process to exit before killing it.
const WINDOW_QUIT_LIMIT: Duration = Duration::from_secs(3);

/// What the tasks and callbacks ask of the main thread.
pub enum UserEvent {
    /// Show this model in the tray.
    Show(Box<MenuModel>, Flags),
    /// A menu item was clicked.
    Menu(MenuEvent),
    /// A second launch (`instance`).
    Launch(Launch),
    /// End the event loop, and the process, with this code.
    Exit(i32),
}

/// The tray process's shared state (cheap to clone).
#[derive(Clone)]
pub struct App(Arc<Shell>);

pub struct Shell {
    proxy: Mutex<EventLoopProxy<UserEvent>>,
    host: Host,
    /// The model last shown: the state the user saw when clicking.
    shown: Mutex<MenuModel>,
    /// Write every value on the next show, e.g. after a click flipped a check item by itself.
    resync: AtomicBool,
    mute: Arc<Mute>,
    autostart: AtomicBool,
    window: WindowProcess,
    /// UI-5: the remote sites followed (set once, right after the shell is made: their
    /// notifications need the app).
    sites: OnceLock<remote::Sites>,
    /// "Run a node on this computer" (UI-5) as it is now; changed only under `node_change`,
    /// which also keeps a start and a stop from overlapping.
    run_node: AtomicBool,
    node_change: tokio::sync::Mutex<()>,
    /// The task that turns the node's events into notifications was started (once: it waits
    /// through the node's absences and reads the same event log when it is back).
    following_events: AtomicBool,
}

impl App {
    fn send(&self, event: UserEvent) {
        let proxy = self.0.proxy.lock().unwrap_or_else(|e| e.into_inner());
        if proxy.send_event(event).is_err() {
            tracing::debug!("the event loop has ended");
        }
    }

    /// Opens the console window: raises the window process if it runs, else starts one.
    /// Callable from any thread (menu, second launch, notification click).
    pub fn open_window(&self) {
        self.0.window.open()
    }

    /// Ends the process with `code` (from the main thread's loop).
    pub fn exit(&self, code: i32) {
        self.send(UserEvent::Exit(code))
    }

    fn sites(&self) -> &remote::Sites {
        self.0
            .sites
            .get()
            .expect("the sites are set when the app is made")
    }

    fn flags(&self) -> Flags {
        Flags {
            muted: self.0.mute.is_muted(),
            autostart: self.0.autostart.load(Ordering::Relaxed),
            run_node: self.0.run_node.load(Ordering::Relaxed),
        }
    }

    fn show(&self, model: MenuModel) {
        *self.0.shown.lock().unwrap_or_else(|e| e.into_inner()) = model.clone();
        self.send(UserEvent::Show(Box::new(model), self.flags()))
    }

    fn shown(&self) -> MenuModel {
        self.0
            .shown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Runs the tray process until Quit. `hidden`: no window at start. `gl_disabled_here`:
/// `disable_gl` set GDK_GL for this process (the window process is started without it).
/// `launch`: what this start asks of a tray already running (it then exits here).
pub fn run(hidden: bool, gl_disabled_here: bool, launch: Launch) -> ! {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("understudy-tray")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("the desktop app could not start: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let _entered = runtime.enter();

    // First: a second launch only tells the first one.
    let mut instance = match sites::app_dir() {
        Ok(dir) => match instance::claim(&dir, launch) {
            Ok(Some(listener)) => Some(listener),
            Ok(None) => {
                tracing::info!(?launch, "the app already runs: told it, exiting");
                std::process::exit(0);
            }
            Err(e) => {
                tracing::warn!("no single-instance socket in {}: {e}", dir.display());
                None
            }
        },
        Err(reason) => {
            tracing::warn!("no single-instance socket: {reason}");
            None
        }
    };

    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    {
        let proxy = Mutex::new(proxy.clone());
        MenuEvent::set_event_handler(Some(move |event| {
            let proxy = proxy.lock().unwrap_or_else(|e| e.into_inner());
            let _ = proxy.send_event(UserEvent::Menu(event));
        }));
    }

    let host = Host::new();
    let run_node = settings::decide();
    // The window process is given the data directory the node uses; without one (no home
    // directory) it looks for itself and shows why it cannot reach the node.
    let window = WindowProcess::new(
        runtime.handle().clone(),
        host::data_dir().ok(),
        gl_disabled_here,
    );
    let app = App(Arc::new(Shell {
        proxy: Mutex::new(proxy),
        host: host.clone(),
        shown: Mutex::new(MenuModel::stopped("starting")),
        resync: AtomicBool::new(false),
        mute: Mute::new(),
        autostart: AtomicBool::new(autostart::is_enabled()),
        window,
        sites: OnceLock::new(),
        run_node: AtomicBool::new(run_node),
        node_change: tokio::sync::Mutex::new(()),
        following_events: AtomicBool::new(false),
    }));
    let _ = app.0.sites.set(site_follower(&app));

    let mut tray: Option<Tray> = None;
    event_loop.run(move |event, _, control_flow| {
        *control_flow = ControlFlow::Wait;
        match event {
            // The tray is made once the loop runs (GTK is initialised by then).
            Event::NewEvents(StartCause::Init) => {
                match Tray::create(app.flags()) {
                    Ok(made) => tray = Some(made),
                    Err(e) => {
                        tracing::error!("the desktop app could not start: the tray icon: {e}");
                        *control_flow = ControlFlow::ExitWithCode(1);
                        return;
                    }
                }
                start(&app, instance.take(), hidden);
            }
            Event::UserEvent(UserEvent::Show(model, flags)) => {
                if let Some(tray) = tray.as_mut() {
                    let all = app.0.resync.swap(false, Ordering::SeqCst);
                    if let Err(e) = tray.update(*model, flags, all) {
                        tracing::warn!("could not update the tray: {e}");
                    }
                }
            }
            Event::UserEvent(UserEvent::Menu(event)) => {
                match Action::from_id(event.id().as_ref()) {
                    Some(action) => on_action(&app, action),
                    None => {
                        tracing::debug!(id = event.id().as_ref(), "menu item without an action")
                    }
                }
            }
            Event::UserEvent(UserEvent::Launch(Launch::Open)) => app.open_window(),
            // `--join` stored its site already: the sites watcher picks it up.
            Event::UserEvent(UserEvent::Launch(Launch::Joined)) => {}
            Event::UserEvent(UserEvent::Exit(code)) => {
                *control_flow = ControlFlow::ExitWithCode(code)
            }
            _ => {}
        }
    })
}

/// Starts the tasks once the tray shows: later launches, the sites, the node, the status poll.
fn start(app: &App, instance: Option<instance::Listener>, hidden: bool) {
    if let Some(listener) = instance {
        let app = app.clone();
        tokio::spawn(listener.serve(move |launch| app.send(UserEvent::Launch(launch))));
    }
    tokio::spawn(app.sites().clone().watch());
    if !hidden {
        app.open_window();
    }
    if app.0.run_node.load(Ordering::Relaxed) {
        tokio::spawn(start_node(app.clone()));
    } else {
        tracing::info!("Run a node on this computer is off: no node started");
        app.0.host.set_off();
    }
    tokio::spawn(follow_status(app.clone()));
}

/// Creates the node on first run, starts it, then follows its events for notifications (one
/// task for the app's life, started with the first node).
async fn start_node(app: App) {
    let shell = &app.0;
    let (host, mute) = (shell.host.clone(), shell.mute.clone());
    let started = {
        let _change = shell.node_change.lock().await;
        host.set_starting();
        let started = match host::data_dir() {
            Ok(dir) => {
                tracing::info!(dir = %dir.display(), "starting the node");
                let desktop = {
                    let (app, mute) = (app.clone(), mute.clone());
                    Arc::new(move |m: &understudy_api::status::DesktopMessage| {
                        notify::show_desktop_message(&app, &mute, m)
                    }) as host::DesktopSink
                };
                host::start_node(&dir, desktop).await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(node) => {
                host.set_running(node);
                tracing::info!("node running");
                true
            }
            Err(reason) => {
                tracing::error!("{reason}");
                notify::show_error(&app, "Understudy could not start its node", &reason);
                host.set_failed(reason);
                false
            }
        }
    };
    if started {
        mute.refresh(&host).await;
        if !shell.following_events.swap(true, Ordering::SeqCst) {
            notify::follow_events(app.clone(), host, mute).await;
        }
    }
}

/// UI-5: the followed sites, their notices shown like the node's (muting included). Without an
/// app directory (no home) no site is followed.
fn site_follower(app: &App) -> remote::Sites {
    let app = app.clone();
    let dir = sites::app_dir();
    if let Err(reason) = &dir {
        tracing::warn!("no remote sites: {reason}");
    }
    let notify: remote::Notify = Arc::new(move |notice: &coalesce::Notice| {
        if app.0.mute.is_muted() {
            tracing::debug!(code = notice.code, "muted: not notified");
        } else {
            notify::show(&app, notice)
        }
    });
    remote::Sites::new(dir.ok(), notify)
}

/// "Run a node on this computer" turned off: stops the node cleanly (no listener, store closed,
/// its threads ended) and leaves no node.
async fn stop_node(app: &App) {
    let _change = app.0.node_change.lock().await;
    tracing::info!("Run a node on this computer turned off: stopping the node");
    app.0.host.shutdown(SHUTDOWN_LIMIT).await;
    app.0.host.set_off();
    tracing::info!("node stopped (no node on this computer)");
}

/// Reads the status every 500 ms and shows it in the tray.
async fn follow_status(app: App) {
    let host = app.0.host.clone();
    let mut tick = tokio::time::interval(STATUS_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        // The node's mute setting may be changed from the window or the CLI: read it now and then.
        if n.is_multiple_of(4) && host.node().is_ok() {
            app.0.mute.refresh(&host).await;
        }
        let mut model = match host.node() {
            Err(_) if host.is_off() => MenuModel::no_node(),
            Err(reason) => MenuModel::stopped(&reason),
            Ok(_) => match host.request(&understudy_api::Request::Status).await {
                (200, status) => match serde_json::from_value(status) {
                    Ok(status) => MenuModel::from_status(&status),
                    Err(e) => MenuModel::stopped(&format!("an unreadable status: {e}")),
                },
                (code, body) => MenuModel::stopped(
                    body["error"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| format!("status {code}"))
                        .as_str(),
                ),
            },
        };
        model.sites = app.sites().sections();
        app.show(model);
    }
}

/// A click in the tray menu. Runs on the main thread: everything that waits is spawned.
fn on_action(app: &App, action: Action) {
    tracing::info!(?action, "tray");
    match action {
        Action::OpenWindow => app.open_window(),
        Action::Quit => {
            tokio::spawn(quit(app.clone()));
        }
        action => {
            tokio::spawn(act(app.clone(), action));
        }
    }
}

async fn act(app: App, action: Action) {
    let shell = &app.0;
    let host = shell.host.clone();
    match &action {
        Action::ToggleMute => {
            let muted = shell.mute.toggle(&host).await;
            tracing::info!(muted, "notifications");
        }
        Action::ToggleAutostart => {
            let want = !shell.autostart.load(Ordering::Relaxed);
            match autostart::set(want) {
                Ok(()) => {
                    tracing::info!(enabled = want, "start at login");
                    shell.autostart.store(want, Ordering::Relaxed)
                }
                Err(e) => notify::show_error(&app, "Could not change start at login", &e),
            }
        }
        Action::ToggleNode => {
            let want = !shell.run_node.load(Ordering::Relaxed);
            match settings::choose_run_node(want) {
                Ok(()) => {
                    shell.run_node.store(want, Ordering::Relaxed);
                    if want {
                        tokio::spawn(start_node(app.clone()));
                    } else {
                        stop_node(&app).await;
                    }
                }
                Err(e) => {
                    notify::show_error(&app, "Could not change Run a node on this computer", &e)
                }
            }
        }
        _ => {
            if let Some(request) = action.request(&app.shown()) {
                let (status, answer) = match &action {
                    Action::Site { site, .. } => app.sites().request(site, &request).await,
                    _ => host.request(&request).await,
                };
                if let Err(e) = host::into_result(status, answer) {
                    notify::show_error(&app, &format!("Could not {}", action.describe()), &e.error);
                }
            }
        }
    }
    // A check item flips itself when clicked: write the real state back on the next tick.
    shell.resync.store(true, Ordering::SeqCst);
}

async fn quit(app: App) {
    app.0.window.close(WINDOW_QUIT_LIMIT).await;
    tracing::info!("quit: stopping the node");
    app.0.host.shutdown(SHUTDOWN_LIMIT).await;
    tracing::info!("node stopped; exiting");
    app.exit(0);
}
