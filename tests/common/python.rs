//! Python clients the tests use: installed with pip when missing, or a reason to skip.

/// Whether Python can import `module`, installing `package` with pip once if not; the reason
/// when it cannot be had (tests then print it and skip).
pub fn python_package(module: &str, package: &str) -> Result<(), String> {
    let imports = || {
        std::process::Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if imports() {
        return Ok(());
    }
    let pip = std::process::Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", package])
        .output();
    match pip {
        Ok(_) if imports() => Ok(()),
        Ok(o) => Err(format!(
            "`python3 -m pip install {package}` did not make `{module}` importable: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run python3: {e}")),
    }
}
