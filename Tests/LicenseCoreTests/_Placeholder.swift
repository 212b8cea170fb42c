enum _PlaceholderLicenseCoreTests {}
