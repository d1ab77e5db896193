//! Build script for the driver.
//!
//! On a Windows host the WDK configuration (include paths, KMDF version, linker arguments) comes
//! from wdk-build, as in Microsoft's Rust driver samples. Everywhere else the driver's
//! Windows-only modules are compiled out, so there is nothing to configure.

#[cfg(windows)]
fn main() -> Result<(), wdk_build::ConfigError> {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("windows") {
        wdk_build::configure_wdk_binary_build()?;
    }
    Ok(())
}

#[cfg(not(windows))]
fn main() {}
