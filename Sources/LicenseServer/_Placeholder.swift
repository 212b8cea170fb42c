enum _PlaceholderLicenseServer {}
