//! A minimal headless "browser" for the authorization server's own login and
//! consent pages: it keeps cookies, follows redirects, and submits each page's
//! first form (hidden fields as they are, any login and password) until a page has
//! no form.

use std::time::Duration;

/// Walks the pages from `start` and returns the last page's URL, signing in as
/// oidc-provider's development pages accept (any login and password).
#[allow(dead_code)] // the CLI's and the Redis tests' sign-ins on oidc-provider
pub async fn approve(start: &str) -> String {
    approve_as(start, ("alice", "any password")).await
}

/// Walks the pages from `start`, filling `user` (login, password) into the login
/// form, and returns the last page's URL.
pub async fn approve_as(start: &str, user: (&str, &str)) -> String {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut page = browser.get(start).send().await.expect("the first page");
    for _ in 0..10 {
        let url = page.url().clone();
        let html = page.text().await.expect("a page");
        let Some((action, fields)) = first_form(&html, user) else {
            return url.to_string();
        };
        // A form without an action posts to its own page.
        let action = url
            .join(&action.unwrap_or_default())
            .expect("a form action");
        page = browser
            .post(action)
            .form(&fields)
            .send()
            .await
            .expect("the form is accepted");
    }
    panic!("more than 10 forms from {start}");
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].replace("&amp;", "&"))
}

/// A form: its action (if it names one) and its fields.
type Form = (Option<String>, Vec<(String, String)>);

/// The first form of `html`, with `user` filled in.
fn first_form(html: &str, user: (&str, &str)) -> Option<Form> {
    let start = html.find("<form")?;
    let end = html[start..].find("</form>")? + start;
    let form = &html[start..end];
    let action = attribute(&form[..form.find('>')?], "action").filter(|a| !a.is_empty());
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        let Some(name) = attribute(tag, "name") else {
            continue;
        };
        let value = match name.as_str() {
            "login" | "username" => user.0.to_owned(),
            "password" => user.1.to_owned(),
            _ => attribute(tag, "value").unwrap_or_default(),
        };
        fields.push((name, value));
    }
    Some((action, fields))
}
