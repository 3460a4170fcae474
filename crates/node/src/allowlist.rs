//! The agent's command allowlist (SECURITY.md, "Command checks are off by default"): which argv
//! `agent.allow_commands` lets this agent run. Read by the configuration's validation and by the
//! check runner.

/// One entry of `agent.allow_commands` (SECURITY.md, "Command checks are off by default"): words
/// separated by spaces; the first matches the program (an absolute path, `*` not crossing `/`);
/// one word allows any arguments, more words match the arguments one for one.
#[derive(Clone, Debug)]
pub struct ArgvPattern {
    program: glob::Pattern,
    args: Option<Vec<glob::Pattern>>,
}

const PATH_MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

impl ArgvPattern {
    pub fn parse(pattern: &str) -> Result<ArgvPattern, String> {
        let words: Vec<&str> = pattern.split_whitespace().collect();
        let Some((program, args)) = words.split_first() else {
            return Err("an empty pattern allows nothing; remove it".into());
        };
        if !program.starts_with('/') {
            return Err(format!(
                "`{program}` is not an absolute path (a pattern names the program by its full path)"
            ));
        }
        let glob = |w: &str| {
            glob::Pattern::new(w).map_err(|e| format!("`{w}` is not a valid pattern: {e}"))
        };
        Ok(ArgvPattern {
            program: glob(program)?,
            args: if args.is_empty() {
                None
            } else {
                Some(args.iter().map(|w| glob(w)).collect::<Result<_, _>>()?)
            },
        })
    }

    fn matches(&self, program: &str, args: &[String]) -> bool {
        self.program.matches_with(program, PATH_MATCH)
            && match &self.args {
                None => true,
                Some(words) => {
                    words.len() == args.len() && words.iter().zip(args).all(|(w, a)| w.matches(a))
                }
            }
    }
}

/// Whether this agent's configuration lets it run `argv` as a command check; the reason when not.
pub fn command_allowed(argv: &[String], allow: &[String]) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("a command target is an argv list".into());
    };
    let shown = argv.join(" ");
    if allow.is_empty() {
        return Err(format!(
            "not allowed on this agent: command checks are off (agent.allow_commands is empty), refused `{shown}`"
        ));
    }
    let path = std::path::Path::new(program);
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "not allowed on this agent: `{program}` is not an absolute path without `..`"
        ));
    }
    let allowed = allow
        .iter()
        .filter_map(|p| ArgvPattern::parse(p).ok())
        .any(|p| p.matches(program, args));
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "not allowed on this agent: `{shown}` matches no agent.allow_commands pattern"
        ))
    }
}
