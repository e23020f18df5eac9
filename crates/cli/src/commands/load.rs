use std::path::{Path, PathBuf};
use std::sync::Arc;

use hpn_transfer::{PlatformChoice, StoreDestination};

use super::{copy_from_archives, engine_options, open_store};
use crate::args::LoadArgs;
use crate::config::Settings;
use crate::exit::{ExitStatus, Failure};
use crate::summary::Summary;

/// Archives named by `-i`, else found by the Go hpn's load mode, go into the
/// store with every image and name they hold.
pub async fn run(args: LoadArgs, settings: &Settings) -> Result<Summary, Failure> {
    let inputs = if args.inputs.is_empty() {
        let mode = args.load_mode.or(settings.default_load_mode).unwrap_or(1);
        find_archives(Path::new("."), mode)?
    } else {
        args.inputs
    };
    let destination = Arc::new(StoreDestination::new(open_store(settings)?));
    let options = engine_options(PlatformChoice::Available, settings);
    let run = copy_from_archives(&inputs, destination, &options, settings, None, |name| Ok(name.clone())).await;
    Ok(run.into_summary("load"))
}

/// Mode 1: `*.tar` (and `.tar.gz`, `.tgz`, `.tar.zst`) in `base`; 2: in
/// `base/images/`; 3: in `base/images/` and every directory below it.
fn find_archives(base: &Path, mode: u8) -> Result<Vec<PathBuf>, Failure> {
    let (dir, recursive) = match mode {
        1 => (base.to_owned(), false),
        2 => (base.join("images"), false),
        _ => (base.join("images"), true),
    };
    let mut found = Vec::new();
    collect_archives(&dir, recursive, &mut found).map_err(|error| {
        Failure::new(ExitStatus::BadArguments, anyhow::anyhow!("cannot list archives in {}: {error}", dir.display()))
    })?;
    if found.is_empty() {
        return Err(Failure::new(
            ExitStatus::BadArguments,
            anyhow::anyhow!("no archives (*.tar, *.tar.gz, *.tar.zst) in {}; name them with -i FILE", dir.display()),
        ));
    }
    found.sort();
    Ok(found)
}

fn collect_archives(dir: &Path, recursive: bool, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind.is_dir() && recursive {
            collect_archives(&path, true, found)?;
        } else if kind.is_file() && [".tar", ".tar.gz", ".tgz", ".tar.zst"].iter().any(|suffix| name.ends_with(suffix))
        {
            found.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_modes_find_archives_like_the_go_hpn() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for path in ["a.tar", "notes.txt", "images/b.tar.gz", "images/team/c.tar", "images/team/deep/d.tar.zst"] {
            let path = base.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        let names = |mode| -> Vec<String> {
            find_archives(base, mode)
                .unwrap()
                .iter()
                .map(|path| path.strip_prefix(base).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names(1), ["a.tar"]);
        assert_eq!(names(2), ["images/b.tar.gz"]);
        assert_eq!(names(3), ["images/b.tar.gz", "images/team/c.tar", "images/team/deep/d.tar.zst"]);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(find_archives(empty.path(), 1).unwrap_err().status, ExitStatus::BadArguments);
    }
}
