enum _PlaceholderLicenseCore {}
