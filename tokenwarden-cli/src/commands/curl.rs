//! `tokenwarden curl`: an authenticated request; after a 401 the token is
//! refreshed and the request replayed once.

use super::Context;
use crate::cli::CurlArgs;
use crate::exit::{CliError, HTTP_FAIL, OK, UNAVAILABLE, USAGE};
use crate::profile::Interaction;
use std::io::Write as _;
use tokenwarden::http::AllowedOrigins;
use tokenwarden_reqwest::AuthClient;

pub async fn run(ctx: &Context, args: &CurlArgs) -> Result<u8, CliError> {
    let profile = ctx.profile(args.profile.profile.as_deref())?;
    let base = profile.base_url()?;
    let url = match &base {
        Some(base) => resolve(base, &args.url),
        None => url::Url::parse(&args.url),
    }
    .map_err(|e| {
        CliError::usage(format!("`{}` is not a URL: {e}", args.url))
            .hint("give an absolute URL, or set base_url in the profile for relative ones")
    })?;
    let manager = profile.manager(Interaction::Refused).await?;
    // The token goes to the URL's origin only: the base URL's, or the one asked for.
    let origin = base.as_ref().unwrap_or(&url);
    let mut client = AuthClient::builder()
        .base_url(origin.as_str())
        .allowed_origins(AllowedOrigins::of(origin.as_str())?)
        .token_manager(manager.clone());
    // Mutual TLS (a certificate-bound token goes with its certificate), a private CA.
    if let Some(certificate) = crate::tls::certificate(&profile)? {
        client = client.identity(certificate.identity());
    }
    if let Some(ca) = crate::tls::ca(&profile)? {
        client = client.add_root_certificate(ca);
    }
    let client = client.build()?;
    let body = body(args)?;
    let method = match (&args.method, &body) {
        (Some(method), _) => method.to_uppercase(),
        (None, Some(_)) => "POST".into(),
        (None, None) => "GET".into(),
    };
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| CliError::usage(format!("`{method}` is not an HTTP method")))?;
    let mut request = client.request(method, url.as_str());
    for header in &args.headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            CliError::usage(format!("the header `{header}` is not `Name: value`"))
                .hint("write it as -H 'Name: value'")
        })?;
        request = request.header(name.trim(), value.trim());
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await;
    crate::last_refresh::save(&profile.name, &manager).await;
    let response = response.map_err(|e| match e {
        reqwest_middleware::Error::Middleware(e) => match e.downcast::<tokenwarden::Error>() {
            Ok(e) => CliError::from(e),
            Err(e) => CliError::new(UNAVAILABLE, format!("the request failed: {e}")),
        },
        reqwest_middleware::Error::Reqwest(e) => {
            CliError::new(UNAVAILABLE, format!("the request failed: {e}"))
                .hint("check the URL and that the server is up")
        }
    })?;
    let status = response.status();
    let mut out = std::io::stdout().lock();
    let write_error =
        |e: std::io::Error| CliError::new(USAGE, format!("cannot write to stdout: {e}"));
    if args.include {
        writeln!(out, "{:?} {}", response.version(), status).map_err(write_error)?;
        for (name, value) in response.headers() {
            writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()))
                .map_err(write_error)?;
        }
        writeln!(out).map_err(write_error)?;
    }
    if args.fail && status.as_u16() >= 400 {
        // As curl --fail: no body, an exit code and a line on stderr.
        return Err(
            CliError::new(HTTP_FAIL, format!("the server answered {status}"))
                .hint("drop --fail to see the response body"),
        );
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CliError::new(UNAVAILABLE, format!("reading the response failed: {e}")))?;
    out.write_all(&bytes).map_err(write_error)?;
    out.flush().map_err(write_error)?;
    if args.fail && status.as_u16() >= 400 {
        return Err(CliError::new(
            HTTP_FAIL,
            format!("the server answered {status}"),
        ));
    }
    Ok(OK)
}

/// `url` against the profile's base URL: absolute URLs as they are, and relative
/// ones, with or without a leading `/`, under the base URL's path (as the proxy
/// maps them): with `https://api.example.com/v1`, `/users` is `/v1/users`.
fn resolve(base: &url::Url, url: &str) -> Result<url::Url, url::ParseError> {
    if let Ok(absolute) = url::Url::parse(url) {
        return Ok(absolute);
    }
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join(url.trim_start_matches('/'))
}

fn body(args: &CurlArgs) -> Result<Option<Vec<u8>>, CliError> {
    if let Some(data) = &args.data {
        return Ok(Some(data.clone().into_bytes()));
    }
    let Some(path) = &args.data_file else {
        return Ok(None);
    };
    let read = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map(|_| bytes)
    } else {
        std::fs::read(path)
    };
    read.map(Some)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn relative_urls_stay_under_the_base_path() {
        let base = url::Url::parse("https://api.example.com/v1").unwrap();
        for (asked, expected) in [
            ("users", "https://api.example.com/v1/users"),
            ("/users", "https://api.example.com/v1/users"),
            ("/users?page=2", "https://api.example.com/v1/users?page=2"),
            ("https://other.example.com/x", "https://other.example.com/x"),
        ] {
            assert_eq!(resolve(&base, asked).unwrap().as_str(), expected, "{asked}");
        }
        let root = url::Url::parse("https://api.example.com").unwrap();
        assert_eq!(
            resolve(&root, "/users").unwrap().as_str(),
            "https://api.example.com/users"
        );
    }
}
