//! The admin API's bearer token: read from an owner-only file or an
//! environment variable, compared in constant time.

use std::path::Path;

use subtle::ConstantTimeEq as _;

use super::AdminError;

/// The environment variable that holds the token when no file is given.
pub const TOKEN_ENV: &str = "WEIR_ADMIN_TOKEN";

/// A bearer token. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

impl Token {
    /// The token `file` holds (surrounding whitespace, such as the final
    /// newline, is not part of it). Refused when the file's group or
    /// others have any access to it, as ssh does with private keys.
    pub fn from_file(file: &Path) -> Result<Token, AdminError> {
        let read = |cause| AdminError::TokenFileRead {
            path: file.to_path_buf(),
            cause,
        };
        let bytes = super::read_owner_only(file)
            .map_err(read)?
            .map_err(|mode| AdminError::TokenFileExposed {
                path: file.to_path_buf(),
                mode,
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Token::new(text.trim(), &file.display().to_string())
    }

    /// A token given as text; `from` names where it came from.
    pub fn new(text: &str, from: &str) -> Result<Token, AdminError> {
        if text.is_empty() {
            return Err(AdminError::EmptyToken(from.to_string()));
        }
        Ok(Token(text.to_string()))
    }

    /// The token a command line configures: the file if one is named,
    /// else [`TOKEN_ENV`] if it is set, else none.
    pub fn configured(file: Option<&Path>) -> Result<Option<Token>, AdminError> {
        if let Some(file) = file {
            return Token::from_file(file).map(Some);
        }
        match std::env::var(TOKEN_ENV) {
            Ok(text) => Token::new(text.trim(), TOKEN_ENV).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Whether `presented` is this token, in time that does not depend on
    /// where they differ (only on their lengths).
    pub fn matches(&self, presented: &str) -> bool {
        self.0.as_bytes().ct_eq(presented.as_bytes()).into()
    }

    /// The token as a request sends it.
    pub(super) fn secret(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_token_file_others_can_read_is_refused_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Token::from_file(&file).unwrap_err().to_string();
        assert!(err.contains("has mode 0644"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = Token::from_file(&file).unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cret\n"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "Token(<hidden>)");
    }

    #[test]
    fn an_empty_token_is_refused() {
        assert!(matches!(
            Token::new("", TOKEN_ENV),
            Err(AdminError::EmptyToken(_))
        ));
    }
}
