// OpenLDAP's client library (Debian libldap-dev), for the directory sync. The helpers below wrap
// what Swift cannot call directly: macros that are casts (LDAP_SCOPE_SUBTREE, LDAP_SASL_SIMPLE,
// LDAP_OPT_ON) and the Simple Paged Results control's create/parse dance (RFC 2696).
#ifndef LICENSED_COPENLDAP_SHIM_H
#define LICENSED_COPENLDAP_SHIM_H

#define LDAP_DEPRECATED 0
#include <lber.h>
#include <ldap.h>
#include <string.h>
#include <sys/time.h>

static const int lc_ldap_scope_subtree = LDAP_SCOPE_SUBTREE;
static const int lc_ldap_scope_base = LDAP_SCOPE_BASE;

/// Simple bind with `dn` and `password` (anonymous when both are empty).
static inline int lc_ldap_simple_bind(LDAP *ld, const char *dn, const char *password) {
    struct berval credentials;
    credentials.bv_val = (char *)password;
    credentials.bv_len = password ? strlen(password) : 0;
    return ldap_sasl_bind_s(ld, dn, LDAP_SASL_SIMPLE, &credentials, NULL, NULL, NULL);
}

/// Network and operation timeouts of `seconds`.
static inline void lc_ldap_set_timeouts(LDAP *ld, int seconds) {
    struct timeval timeout = {seconds, 0};
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &timeout);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &timeout);
}

/// Turns referral chasing off (Active Directory's referrals to other domains would bind anonymously).
static inline int lc_ldap_no_referrals(LDAP *ld) {
    return ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
}

/// One page of a subtree search: `page_size` entries after `cookie` (empty for the first page).
/// On success `*result` holds the entries and `*next_cookie` (free with ber_bvfree) the cookie of
/// the next page, empty (bv_len 0) after the last one.
static inline int lc_ldap_search_page(LDAP *ld, const char *base, int scope, const char *filter, char **attributes,
                                      int page_size, struct berval *cookie, int timeout_seconds,
                                      LDAPMessage **result, struct berval **next_cookie) {
    LDAPControl *page = NULL;
    *result = NULL;
    *next_cookie = NULL;
    int rc = ldap_create_page_control(ld, page_size, cookie, 0, &page);
    if (rc != LDAP_SUCCESS) return rc;
    LDAPControl *controls[2] = {page, NULL};
    struct timeval timeout = {timeout_seconds, 0};
    rc = ldap_search_ext_s(ld, base, scope, filter, attributes, 0, controls, NULL, &timeout, LDAP_NO_LIMIT, result);
    ldap_control_free(page);
    if (rc != LDAP_SUCCESS) return rc;
    int code = LDAP_SUCCESS;
    LDAPControl **returned = NULL;
    rc = ldap_parse_result(ld, *result, &code, NULL, NULL, NULL, &returned, 0);
    if (rc != LDAP_SUCCESS) return rc;
    if (code != LDAP_SUCCESS) {
        ldap_controls_free(returned);
        return code;
    }
    LDAPControl *response = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, returned, NULL);
    struct berval *next = ber_memcalloc(1, sizeof(struct berval));
    if (response != NULL) {
        ber_int_t estimate = 0;
        rc = ldap_parse_pageresponse_control(ld, response, &estimate, next);
    }
    ldap_controls_free(returned);
    *next_cookie = next;
    return rc;
}

#endif
