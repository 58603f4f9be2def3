//! HTML building: every piece of data goes through [`esc`] (or [`attr`]) on its way into a
//! page; the layout, and the small form pieces every page shares.

use std::fmt::Write;

/// `s` escaped for an HTML text node or a double-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded for a query parameter value (names may hold `/+=@!`).
pub fn url(s: &str) -> String {
    coffer_server::sts::percent_encode(s)
}

/// Who is signed in, for the page header.
pub struct Header<'a> {
    pub arn: &'a str,
    pub region: &'a str,
    pub csrf: &'a str,
}

/// A whole page: `title` (text), `body` (HTML already escaped).
pub fn page(title: &str, who: Option<&Header<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(who) = who {
        let _ = write!(
            nav,
            r#"<nav aria-label="Console"><ul>
<li><a href="/console/secrets">Secrets</a></li>
<li><a href="/console/keys">KMS keys</a></li>
</ul>
<p class="who">Signed in as <span class="arn">{}</span> in <span class="region">{}</span></p>
<form method="post" action="/console/signout" class="inline">{}<button type="submit">Sign out</button></form>
</nav>"#,
            esc(who.arn),
            esc(who.region),
            csrf_field(who.csrf)
        );
    }
    format!(
        r##"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} - Coffer console</title>
<link rel="stylesheet" href="/console/static/console.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header><p class="brand"><a href="/console/secrets">Coffer</a> <span>Secrets Manager console</span></p>{nav}</header>
<main id="main">
<h1>{}</h1>
{body}
</main>
</body>
</html>
"##,
        esc(title),
        esc(title)
    )
}

/// The hidden CSRF field every state-changing form carries.
pub fn csrf_field(token: &str) -> String {
    format!(r#"<input type="hidden" name="csrf" value="{}">"#, esc(token))
}

/// A hidden field.
pub fn hidden(name: &str, value: &str) -> String {
    format!(r#"<input type="hidden" name="{}" value="{}">"#, esc(name), esc(value))
}

/// A labelled text input.
pub fn text_input(id: &str, name: &str, label: &str, value: &str) -> String {
    format!(
        r#"<p class="field"><label for="{id}">{}</label><input type="text" id="{id}" name="{}" value="{}"></p>"#,
        esc(label),
        esc(name),
        esc(value),
        id = esc(id)
    )
}

/// An error box with AWS's code and message.
pub fn error_box(code: &str, message: &str) -> String {
    format!(
        r#"<div class="error" role="alert"><p><strong>{}</strong></p><p class="message">{}</p></div>"#,
        esc(code),
        esc(message)
    )
}

/// A notice box.
pub fn notice(message: &str) -> String {
    format!(r#"<div class="notice" role="status"><p>{}</p></div>"#, esc(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
        assert_eq!(url("a/b c+d"), "a%2Fb%20c%2Bd");
    }

    #[test]
    fn page_escapes_its_title_and_header() {
        let who = Header { arn: "<b>", region: "us-east-1", csrf: "t\"" };
        let html = page("<i>", Some(&who), "");
        assert!(!html.contains("<i>") && !html.contains("<b>"));
        assert!(html.contains("value=\"t&quot;\""));
    }
}
