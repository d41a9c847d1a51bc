//! Small valid PDF documents (pdf-writer) for A007 clinical information summaries and
//! synthetic attachments: one A4 page with a title and lines of Helvetica text.

use pdf_writer::{Content, Name, Pdf, Rect, Ref, Str};

/// A one-page PDF with `title` and `lines` (non-ASCII characters are replaced by `?`).
pub fn document(title: &str, lines: &[String]) -> Vec<u8> {
    let catalog_id = Ref::new(1);
    let tree_id = Ref::new(2);
    let page_id = Ref::new(3);
    let font_id = Ref::new(4);
    let content_id = Ref::new(5);
    let font_name = Name(b"F1");

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(tree_id);
    pdf.pages(tree_id).kids([page_id]).count(1);
    let mut page = pdf.page(page_id);
    page.media_box(Rect::new(0.0, 0.0, 595.0, 842.0));
    page.parent(tree_id);
    page.contents(content_id);
    page.resources().fonts().pair(font_name, font_id);
    drop(page);
    pdf.type1_font(font_id).base_font(Name(b"Helvetica"));

    let mut content = Content::new();
    content.begin_text();
    content.set_font(font_name, 16.0);
    content.next_line(56.0, 780.0);
    content.show(Str(ascii(title).as_bytes()));
    content.set_font(font_name, 11.0);
    for line in lines {
        content.next_line(0.0, -20.0);
        content.show(Str(ascii(line).as_bytes()));
    }
    content.end_text();
    pdf.stream(content_id, &content.finish());
    pdf.finish()
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produces_a_pdf() {
        let bytes = document("Title", &["line one".into(), "naïve".into()]);
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(bytes.windows(5).any(|w| w == b"%%EOF"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("line one"));
        assert!(text.contains("na?ve"));
    }
}
