enum _PlaceholderLicenseCryptoTests {}
