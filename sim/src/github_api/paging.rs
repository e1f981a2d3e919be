//! Query strings and pages: `per_page` and `page` as GitHub takes them, and the `Link`
//! header it answers a page with.

use super::Answer;
use super::endpoints::invalid;

pub(super) fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `per_page` (1..=100, default 30) and `page` (from 1); 422 for other keys.
pub(super) fn pagination(query: &str, allowed: &[&str]) -> Result<(usize, usize), Answer> {
    let (mut per_page, mut page) = (30, 1);
    for (key, value) in query_pairs(query) {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(&format!(
                "Invalid request: unknown parameter {key}"
            )));
        }
        match (key.as_str(), value.parse::<usize>()) {
            ("per_page", Ok(n @ 1..=100)) => per_page = n,
            ("page", Ok(n @ 1..)) => page = n,
            ("per_page" | "page", _) => {
                return Err(invalid(&format!("Invalid request: bad {key}")));
            }
            _ => {}
        }
    }
    Ok((per_page, page))
}

/// The `Link` header GitHub answers a page of a list with: `first` and `prev` after the
/// first page, `next` and `last` before the last, each the request's own URL (on `host`)
/// with its `page` changed. `None` when everything fits in one page.
pub(super) fn link(
    host: &str,
    path: &str,
    query: &str,
    total: usize,
    (per_page, page): (usize, usize),
) -> Option<String> {
    let last = total.div_ceil(per_page).max(1);
    if last == 1 && page == 1 {
        return None;
    }
    let url = |n: usize| {
        let mut query: Vec<(String, String)> = query_pairs(query)
            .into_iter()
            .filter(|(k, _)| k != "page")
            .collect();
        query.push(("page".into(), n.to_string()));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        format!("<http://{host}{path}?{query}>")
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url(1)));
        links.push(format!("{}; rel=\"prev\"", url((page - 1).min(last))));
    }
    Some(links.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_middle_page_links_every_way_and_a_single_page_links_nowhere() {
        let link = link(
            "h",
            "/orgs/o/actions/runners",
            "per_page=100&page=2",
            250,
            (100, 2),
        );
        assert_eq!(
            link.as_deref(),
            Some(
                "<http://h/orgs/o/actions/runners?per_page=100&page=3>; rel=\"next\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=3>; rel=\"last\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=1>; rel=\"first\", \
                 <http://h/orgs/o/actions/runners?per_page=100&page=1>; rel=\"prev\""
            )
        );
        assert_eq!(super::link("h", "/p", "", 30, (30, 1)), None);
    }
}
