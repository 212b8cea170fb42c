enum _PlaceholderLicenseProtocolTests {}
