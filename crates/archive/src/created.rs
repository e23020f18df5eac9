//! The creation time of an archive (`hpn save --created`, `SOURCE_DATE_EPOCH`).

use chrono::{DateTime, SecondsFormat, Utc};

/// When an archive was made, as the user asked to record it: the mtime of
/// every tar entry and the bill of contents' `created`
/// ([`crate::BillOfContents::created`]). Whole seconds since the Unix epoch,
/// from 1970 to 2242 (what a ustar header holds). Without one, entries have
/// mtime 0 and the bill no creation time, so that an archive's bytes depend
/// only on its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CreationTime {
    seconds: u64,
}

impl CreationTime {
    /// The latest time a ustar header's 11 octal digits hold.
    const MAX_SECONDS: u64 = 0o77777777777;

    /// The time `seconds` after the Unix epoch.
    pub fn from_unix_seconds(seconds: u64) -> Result<Self, String> {
        if seconds > Self::MAX_SECONDS {
            return Err(format!("{seconds} seconds is after {}, the latest time a tar header holds", Self::latest()));
        }
        Ok(Self { seconds })
    }

    /// Reads an RFC 3339 time (`2024-05-01T12:00:00Z`, any UTC offset;
    /// fractions of a second are dropped), or seconds since the Unix epoch,
    /// `@1714564800` as `date -d` and `touch -d` read it, or bare as
    /// `SOURCE_DATE_EPOCH` holds it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits = text.strip_prefix('@').unwrap_or(text);
        if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
            let seconds = digits.parse().map_err(|_| format!("{text:?} is too large a number of seconds"))?;
            return Self::from_unix_seconds(seconds);
        }
        let time = DateTime::parse_from_rfc3339(text)
            .map_err(|error| format!("{text:?} is neither an RFC 3339 time nor @SECONDS since 1970 ({error})"))?;
        let seconds = u64::try_from(time.timestamp())
            .map_err(|_| format!("{text:?} is before 1970, which a tar header cannot hold"))?;
        Self::from_unix_seconds(seconds)
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> u64 {
        self.seconds
    }

    /// The time in RFC 3339, UTC, whole seconds: `2024-05-01T12:00:00Z`.
    pub fn to_rfc3339(self) -> String {
        let seconds = i64::try_from(self.seconds).expect("at most MAX_SECONDS");
        DateTime::<Utc>::from_timestamp(seconds, 0)
            .expect("MAX_SECONDS is a valid time")
            .to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn latest() -> String {
        Self { seconds: Self::MAX_SECONDS }.to_rfc3339()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_epoch_seconds_read_the_same_time() {
        let time = CreationTime::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(time.unix_seconds(), 1_714_564_800);
        assert_eq!(CreationTime::parse("@1714564800").unwrap(), time);
        assert_eq!(CreationTime::parse("1714564800").unwrap(), time);
        assert_eq!(CreationTime::parse("2024-05-01T14:00:00.75+02:00").unwrap(), time);
        assert_eq!(time.to_rfc3339(), "2024-05-01T12:00:00Z");
        assert_eq!(CreationTime::parse("@0").unwrap().to_rfc3339(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn what_a_tar_header_cannot_hold_or_no_time_at_all_is_refused() {
        for bad in
            ["", "@", "yesterday", "2024-05-01", "2024-05-01 12:00", "1969-12-31T23:59:59Z", "@-5", "@99999999999"]
        {
            assert!(CreationTime::parse(bad).is_err(), "{bad:?} was taken");
        }
        let message = CreationTime::parse("1969-12-31T23:59:59Z").unwrap_err();
        assert!(message.contains("before 1970"), "{message}");
        let message = CreationTime::parse("@99999999999").unwrap_err();
        assert!(message.contains("2242"), "{message}");
    }
}
