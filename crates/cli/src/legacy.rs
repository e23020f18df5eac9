use std::ffi::OsString;

/// The Go hpn is driven as `hpn -a save -f images.txt --save-mode 2`. That
/// form is rewritten to the subcommand form (`hpn save -f images.txt
/// --save-mode 2`) before parsing, so both work with one set of definitions.
/// Only an `-a`/`--action` before any subcommand name counts.
pub fn rewrite_action_flag(mut arguments: Vec<OsString>, subcommands: &[String]) -> Vec<OsString> {
    let mut index = 1;
    while index < arguments.len() {
        let argument = arguments[index].to_string_lossy().into_owned();
        let action = if argument == "-a" || argument == "--action" {
            (index + 1 < arguments.len()).then(|| (arguments[index + 1].clone(), 2))
        } else if let Some(value) = argument.strip_prefix("--action=") {
            Some((OsString::from(value), 1))
        } else if let Some(value) = argument.strip_prefix("-a").filter(|value| !value.is_empty()) {
            Some((OsString::from(value), 1))
        } else if subcommands.contains(&argument) || argument == "--" {
            return arguments;
        } else {
            None
        };
        if let Some((action, width)) = action {
            arguments.drain(index..index + width);
            arguments.insert(1, action);
            return arguments;
        }
        index += 1;
    }
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(line: &str) -> String {
        let arguments = line.split(' ').map(OsString::from).collect();
        rewrite_action_flag(arguments, &["pull".into(), "save".into()])
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn action_flag_becomes_a_subcommand() {
        assert_eq!(rewrite("hpn -a save -f images.txt --save-mode 2"), "hpn save -f images.txt --save-mode 2");
        assert_eq!(rewrite("hpn --action=pull -f x"), "hpn pull -f x");
        assert_eq!(rewrite("hpn --quiet -a pull -f x"), "hpn pull --quiet -f x");
        assert_eq!(rewrite("hpn -apull -f x"), "hpn pull -f x");
        assert_eq!(rewrite("hpn --store /s -a save -o a.tar"), "hpn save --store /s -o a.tar");
    }

    #[test]
    fn subcommand_form_is_left_alone() {
        assert_eq!(rewrite("hpn save -f a.txt -o out.tar"), "hpn save -f a.txt -o out.tar");
        assert_eq!(rewrite("hpn pull nginx"), "hpn pull nginx");
    }
}
