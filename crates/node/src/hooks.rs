//! PR-7: `on_activate` / `on_deactivate` hooks, run on this member's host as an argv list (never
//! through a shell), with the pair context in environment variables, killed after `hook_timeout`.

use std::time::Duration;

use understudy_engine::PairEpoch;

use crate::config::format_duration;
use crate::mailbox::{CoreSender, Input};

/// One hook to run: what it is for, and what runs it.
pub(crate) struct Hook {
    pub pair: String,
    pub hook: &'static str,
    pub epoch: PairEpoch,
    pub argv: Vec<String>,
    /// This node's name (`UNDERSTUDY_NODE`) and `agent.hook_timeout`.
    pub node: String,
    pub timeout: Duration,
}

/// Runs a hook in the background and reports its result to the core.
pub(crate) fn spawn(core: CoreSender, hook: Hook) {
    let Hook {
        pair,
        hook,
        epoch,
        argv,
        node,
        timeout,
    } = hook;
    tokio::spawn(async move {
        let result = if argv.is_empty() {
            Ok(())
        } else {
            run(&argv, &pair, hook, epoch, &node, timeout).await
        };
        let _ = core.send(Input::HookDone {
            pair,
            hook,
            epoch,
            result,
        });
    });
}

/// Runs one hook to completion or its timeout. The error says what happened.
pub async fn run(
    argv: &[String],
    pair: &str,
    hook: &str,
    epoch: PairEpoch,
    node: &str,
    timeout: Duration,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = crate::procgroup::command(program)
        .args(args)
        .env("UNDERSTUDY_HOOK", hook)
        .env("UNDERSTUDY_PAIR", pair)
        .env("UNDERSTUDY_PAIR_EPOCH", epoch.pair.to_string())
        .env("UNDERSTUDY_SERVER_EPOCH", epoch.server.to_string())
        .env("UNDERSTUDY_NODE", node)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut group = crate::procgroup::GroupGuard::new(&child);
    let waited = tokio::time::timeout(timeout, child.wait()).await;
    if matches!(waited, Ok(Ok(_))) {
        group.disarm();
    }
    drop(group);
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(match status.code() {
            Some(code) => format!("exit status {code}"),
            None => "killed by a signal".into(),
        }),
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "hung: killed after hook_timeout {}",
                format_duration(timeout)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e() -> PairEpoch {
        PairEpoch { server: 1, pair: 4 }
    }

    #[tokio::test]
    async fn pr7_hook_gets_the_pair_context_in_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env");
        let script = format!(
            "echo \"$UNDERSTUDY_HOOK $UNDERSTUDY_PAIR $UNDERSTUDY_PAIR_EPOCH\" > {}",
            out.display()
        );
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
        run(
            &argv,
            "web; rm -rf /",
            "on_activate",
            e(),
            "n",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let got = std::fs::read_to_string(out).unwrap();
        assert_eq!(
            got.trim(),
            "on_activate web; rm -rf / 4",
            "the pair name is data, never shell code"
        );
    }

    #[tokio::test]
    async fn pr7_failing_and_hanging_hooks_are_reported() {
        let fail = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            "exit 3".to_string(),
        ];
        assert_eq!(
            run(&fail, "p", "on_activate", e(), "n", Duration::from_secs(5))
                .await
                .unwrap_err(),
            "exit status 3"
        );
        let hang = vec!["/bin/sleep".to_string(), "30".to_string()];
        let err = run(
            &hang,
            "p",
            "on_activate",
            e(),
            "n",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert_eq!(err, "hung: killed after hook_timeout 200ms");
        let missing = vec!["/nonexistent/hook".to_string()];
        assert!(run(
            &missing,
            "p",
            "on_activate",
            e(),
            "n",
            Duration::from_secs(1)
        )
        .await
        .unwrap_err()
        .starts_with("cannot start /nonexistent/hook"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn pr7_a_hung_hook_is_killed_with_everything_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
        let err = run(
            &argv,
            "p",
            "on_activate",
            e(),
            "n",
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
        assert_eq!(err, "hung: killed after hook_timeout 500ms");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        let pid = pid.trim();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let alive = crate::procgroup::alive;
        while alive(pid) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!alive(pid), "the hook's own child {pid} was killed too");
    }
}
