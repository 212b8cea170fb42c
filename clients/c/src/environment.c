/* environment.c — where this process runs, as licences' client_environments name it: physical or
 * virtual machine, and a container. Reads what LicenseHost.HostEnvironment (Swift) reads: DMI, the
 * CPU's hypervisor flag, the paravirtual clock, the container markers. See licensed_client.h. */
#define _POSIX_C_SOURCE 200809L
#include "licensed_client.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The file root/relative read into buffer (NUL-terminated, at most size - 1 bytes); 0 or -1. */
static int read_text(const char *root, const char *relative, char *buffer, size_t size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    FILE *file = fopen(path, "rb");
    if (!file) return -1;
    size_t n = fread(buffer, 1, size - 1, file);
    fclose(file);
    buffer[n] = '\0';
    return 0;
}

static int exists(const char *root, const char *relative) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, relative);
    return access(path, F_OK) == 0;
}

/* The first line of a DMI field, lower-cased into buffer ("" when absent). */
static void dmi(const char *root, const char *name, char *buffer, size_t size, int lower) {
    char relative[256];
    snprintf(relative, sizeof relative, "sys/class/dmi/id/%s", name);
    if (read_text(root, relative, buffer, size) != 0) { buffer[0] = '\0'; return; }
    buffer[strcspn(buffer, "\r\n")] = '\0';
    for (char *p = buffer; lower && *p; p++) *p = (char)tolower((unsigned char)*p);
}

int lc_detect_environment(const char *root, lc_environment *environment) {
    if (!environment) return LC_ERR_USAGE;
    memset(environment, 0, sizeof *environment);
    if (!root) root = "/";
    static const struct { const char *needle, *hypervisor, *cloud; } platforms[] = {
        {"amazon ec2", "amazon", "aws"}, {"google compute engine", "google", "gcp"}, {"alibaba cloud", "kvm", "alibaba"},
        {"digitalocean", "kvm", "digitalocean"}, {"openstack", "kvm", "openstack"}, {"vmware", "vmware", NULL},
        {"virtualbox", "virtualbox", NULL}, {"innotek", "virtualbox", NULL}, {"parallels", "parallels", NULL},
        {"xen", "xen", NULL}, {"bochs", "bochs", NULL}, {"kvm", "kvm", NULL}, {"qemu", "qemu", NULL},
    };
    char vendor[256], product[256], bios[256], all[800], chassis[128], board[128];
    dmi(root, "sys_vendor", vendor, sizeof vendor, 1);
    dmi(root, "product_name", product, sizeof product, 1);
    dmi(root, "bios_vendor", bios, sizeof bios, 1);
    dmi(root, "chassis_asset_tag", chassis, sizeof chassis, 0);
    dmi(root, "board_asset_tag", board, sizeof board, 0);
    snprintf(all, sizeof all, "%s %s %s", vendor, product, bios);
    const char *cloud = NULL;
    if (strcmp(chassis, "7783-7084-3265-9085-8269-3286-77") == 0) { /* Azure's Hyper-V VMs */
        environment->is_virtual = 1;
        snprintf(environment->hypervisor, sizeof environment->hypervisor, "hyperv");
        cloud = "azure";
    }
    for (size_t i = 0; !environment->is_virtual && i < sizeof platforms / sizeof platforms[0]; i++) {
        if (strstr(all, platforms[i].needle)) {
            environment->is_virtual = 1;
            snprintf(environment->hypervisor, sizeof environment->hypervisor, "%s", platforms[i].hypervisor);
            cloud = platforms[i].cloud;
        }
    }
    if (!environment->is_virtual && strcmp(vendor, "microsoft corporation") == 0 && strcmp(product, "virtual machine") == 0) {
        environment->is_virtual = 1;
        snprintf(environment->hypervisor, sizeof environment->hypervisor, "hyperv");
    }
    char *text = malloc(1 << 20);
    if (!text) return LC_ERR_NO_MEMORY;
    if (!environment->is_virtual && read_text(root, "proc/cpuinfo", text, 1 << 20) == 0) {
        char *flags = strstr(text, "\nflags");
        if (!flags && strncmp(text, "flags", 5) == 0) flags = text;
        if (flags) {
            char *end = strchr(flags + 1, '\n');
            if (end) *end = '\0';
            if (strstr(flags, " hypervisor")) {
                environment->is_virtual = 1;
                snprintf(environment->hypervisor, sizeof environment->hypervisor, "unknown");
            }
        }
    }
    /* The paravirtual clock names the hypervisor where DMI does not (QEMU under KVM, containers). */
    if (environment->is_virtual && (strcmp(environment->hypervisor, "unknown") == 0 || strcmp(environment->hypervisor, "qemu") == 0)
        && read_text(root, "sys/devices/system/clocksource/clocksource0/available_clocksource", text, 4096) == 0) {
        if (strstr(text, "kvm-clock")) snprintf(environment->hypervisor, sizeof environment->hypervisor, "kvm");
        else if (strstr(text, "hyperv")) snprintf(environment->hypervisor, sizeof environment->hypervisor, "hyperv");
        else if (strstr(text, "xen")) snprintf(environment->hypervisor, sizeof environment->hypervisor, "xen");
    }
    const char *named = getenv("container");
    if (named && *named) snprintf(environment->container, sizeof environment->container, "%s", strcmp(named, "oci") == 0 ? "container" : named);
    else if (exists(root, ".dockerenv")) snprintf(environment->container, sizeof environment->container, "docker");
    else if (exists(root, "run/.containerenv")) snprintf(environment->container, sizeof environment->container, "podman");
    else if (getenv("KUBERNETES_SERVICE_HOST")) snprintf(environment->container, sizeof environment->container, "kubernetes");
    else if (read_text(root, "proc/1/cgroup", text, 1 << 20) == 0) {
        static const struct { const char *needle, *runtime; } runtimes[] = {
            {"kubepods", "kubernetes"}, {"docker", "docker"}, {"libpod", "podman"}, {"lxc", "lxc"}, {"containerd", "containerd"},
        };
        for (size_t i = 0; i < sizeof runtimes / sizeof runtimes[0]; i++) {
            if (strstr(text, runtimes[i].needle)) {
                snprintf(environment->container, sizeof environment->container, "%s", runtimes[i].runtime);
                break;
            }
        }
    }
    free(text);
    size_t used = environment->is_virtual
                      ? (size_t)snprintf(environment->description, sizeof environment->description, "virtual machine (%s)", environment->hypervisor)
                      : (size_t)snprintf(environment->description, sizeof environment->description, "physical machine");
    if (cloud && used < sizeof environment->description) {
        int aws_id = strcmp(cloud, "aws") == 0 && strncmp(board, "i-", 2) == 0;
        used += (size_t)snprintf(environment->description + used, sizeof environment->description - used, ", cloud %s%s%s", cloud,
                                 aws_id ? " instance " : "", aws_id ? board : "");
    }
    if (environment->container[0] && used < sizeof environment->description)
        snprintf(environment->description + used, sizeof environment->description - used, ", container (%s)", environment->container);
    return LC_OK;
}
