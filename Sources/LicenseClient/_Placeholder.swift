enum _PlaceholderLicenseClient {}
