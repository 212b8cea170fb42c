enum _PlaceholderLicenseServerTests {}
