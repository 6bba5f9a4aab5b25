//! Small text formats for showing state to people: sizes, times, and
//! downloadable exports. Shared by the shell's sync panel and the
//! inspector so they say the same thing the same way.

/// Percent-encodes text for a `data:` URL (everything but unreserved
/// characters), so an exported entry downloads byte for byte.
pub fn data_url(text: &str) -> String {
    let mut url = String::from("data:application/json;charset=utf-8,");
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

/// `HH:MM:SS` (UTC) of a time in milliseconds since the epoch.
pub fn clock_time(ms: f64) -> String {
    // Whole seconds of the day; the float is a non-negative timestamp.
    let seconds = (ms / 1000.0).floor().rem_euclid(86_400.0) as u64;
    format!(
        "{:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Bytes as a short human size: kibibytes to one decimal, rounded half
/// up. In integers: a float's `{:.1}` would link the float formatter
/// (about 12 KiB of wasm) into every build that shows a size.
pub fn byte_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        let tenths = u64::try_from(bytes)
            .unwrap_or(u64::MAX)
            .saturating_mul(10)
            .saturating_add(512)
            / 1024;
        format!("{}.{} KiB", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_url_escapes_everything_but_unreserved() {
        assert_eq!(
            data_url(r#"{"a": "<b>"}"#),
            "data:application/json;charset=utf-8,%7B%22a%22%3A%20%22%3Cb%3E%22%7D"
        );
    }

    #[test]
    fn clock_time_is_time_of_day() {
        assert_eq!(clock_time(0.0), "00:00:00 UTC");
        assert_eq!(clock_time(86_400_000.0 + 3_723_000.0), "01:02:03 UTC");
    }

    #[test]
    fn byte_size_is_short() {
        assert_eq!(byte_size(12), "12 B");
        assert_eq!(byte_size(2048), "2.0 KiB");
        assert_eq!(byte_size(1023), "1023 B");
        assert_eq!(byte_size(1024), "1.0 KiB");
        // 1.0498…, 1.0508…, 1.25 (a half: up) and 1.2998…
        assert_eq!(byte_size(1075), "1.0 KiB");
        assert_eq!(byte_size(1076), "1.1 KiB");
        assert_eq!(byte_size(1280), "1.3 KiB");
        assert_eq!(byte_size(1331), "1.3 KiB");
        assert_eq!(byte_size(10 * 1024 * 1024), "10240.0 KiB");
    }
}
