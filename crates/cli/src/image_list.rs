use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hpn_oci::Reference;

use crate::exit::{ExitStatus, Failure};

/// An image the user asked for, with the text they wrote (the Go hpn names
/// per-image archives after it).
#[derive(Debug, Clone)]
pub struct RequestedImage {
    pub written: String,
    pub reference: Reference,
}

/// A line or argument that is not a valid image reference. It is reported and
/// counted as a failure; the other images still run.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// `images.txt:3` or `argument 2`.
    pub origin: String,
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct ImageList {
    pub images: Vec<RequestedImage>,
    pub rejected: Vec<Rejected>,
}

impl ImageList {
    /// Collects images from arguments and list files. An unreadable list file
    /// ends the command: the user named it and it is not there.
    pub fn collect(arguments: &[String], files: &[PathBuf]) -> Result<Self, Failure> {
        let mut list = Self::default();
        let mut seen = HashSet::new();
        for (position, text) in arguments.iter().enumerate() {
            list.add(text, || format!("argument {}", position + 1), &mut seen);
        }
        for file in files {
            let content = read_list(file)?;
            for (number, line) in content.lines().enumerate() {
                // `nginx:1.25  # frontend` keeps the image and drops the comment.
                let text = line.split_once(" #").map_or(line, |(image, _)| image).trim();
                if text.is_empty() || text.starts_with('#') {
                    continue;
                }
                list.add(text, || format!("{}:{}", file.display(), number + 1), &mut seen);
            }
        }
        if list.images.is_empty() && list.rejected.is_empty() {
            return Err(Failure::new(
                ExitStatus::BadArguments,
                anyhow::anyhow!("no images given: name them as arguments or list them in a file with -f FILE"),
            ));
        }
        Ok(list)
    }

    pub fn references(&self) -> Vec<Reference> {
        self.images.iter().map(|image| image.reference.clone()).collect()
    }

    fn add(&mut self, text: &str, origin: impl FnOnce() -> String, seen: &mut HashSet<Reference>) {
        match text.parse::<Reference>() {
            Ok(reference) => {
                // The same image twice would be fetched once anyway; listing it
                // twice in an archive would only confuse loaders.
                if seen.insert(reference.clone()) {
                    self.images.push(RequestedImage { written: text.to_owned(), reference });
                }
            }
            Err(error) => {
                self.rejected.push(Rejected { origin: origin(), text: text.to_owned(), reason: error.to_string() })
            }
        }
    }
}

/// A list file's content; `-` is stdin (`grep app images.txt | hpn pull -f -`).
fn read_list(file: &Path) -> Result<String, Failure> {
    let read = if file == Path::new(STDIN_NAME) {
        std::io::read_to_string(std::io::stdin().lock()).context("cannot read the image list from stdin")
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read image list {}", file.display()))
    };
    read.map_err(|error| Failure::new(ExitStatus::BadArguments, error))
}

/// The list file name that stands for stdin.
const STDIN_NAME: &str = "-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_skip_comments_and_report_bad_lines_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("images.txt");
        std::fs::write(
            &path,
            "# base images\nnginx:1.25\n\n  alpine  # small\nBad/Name\nnginx:1.25\nlocalhost:5000/a@sha256:xyz\n",
        )
        .unwrap();
        let list = ImageList::collect(&["busybox".to_owned()], std::slice::from_ref(&path)).unwrap();
        let names: Vec<String> = list.images.iter().map(|image| image.reference.to_string()).collect();
        assert_eq!(
            names,
            ["docker.io/library/busybox:latest", "docker.io/library/nginx:1.25", "docker.io/library/alpine:latest"]
        );
        assert_eq!(list.images[2].written, "alpine");
        assert_eq!(list.rejected.len(), 2);
        assert_eq!(list.rejected[0].origin, format!("{}:5", path.display()));
        assert!(list.rejected[0].reason.contains("lowercase"));
        assert_eq!(list.rejected[1].origin, format!("{}:7", path.display()));
    }

    #[test]
    fn missing_list_file_and_empty_request_are_argument_errors() {
        let error = ImageList::collect(&[], &[PathBuf::from("/nonexistent/images.txt")]).unwrap_err();
        assert_eq!(error.status, ExitStatus::BadArguments);
        assert!(format!("{:#}", error.error).contains("/nonexistent/images.txt"));
        assert_eq!(ImageList::collect(&[], &[]).unwrap_err().status, ExitStatus::BadArguments);
    }
}
