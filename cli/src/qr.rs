//! QR codes drawn with Unicode half blocks, for safety numbers and link codes.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// `data` as a QR code in text (two modules per character cell), or a note
/// when it does not fit in a QR code.
pub fn render(data: &[u8]) -> String {
    match QrCode::new(data) {
        Ok(code) => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        Err(e) => format!("(no QR code: {e})"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_safety_number_fits_in_a_square_code() {
        let code = super::render("0123456789".repeat(6).as_bytes());
        let lines: Vec<&str> = code.lines().collect();
        assert!(lines.len() > 10);
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(code.contains('█') || code.contains('▀') || code.contains('▄'));
    }
}
