# The flashable Raspberry Pi image (image/README.md). Included from the top Makefile; works
# alone too: make -f image/image.mk image
# Every target runs as root (mmdebstrap, chroot into the arm64 tree through qemu-user).

IMAGE_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

# Build-host packages: mmdebstrap and qemu-user for the arm64 tree, the cross linker for the
# supervisor, FAT/MBR tools to assemble the card without mounting, qemu-system for the boot test,
# pebble and openssl for its test ACME CA (tests/system/acme-ca), cpio for the initramfs of its
# Raspberry Pi 3 (tests/image/tryboot-firmware).
IMAGE_APT_PACKAGES := mmdebstrap arch-test debian-archive-keyring qemu-user-static binfmt-support \
	gcc-aarch64-linux-gnu libc6-dev-arm64-cross dosfstools mtools fdisk e2fsprogs xz-utils \
	qemu-system-arm curl iproute2 python3 python3-pip python3-installer binutils pebble openssl \
	minisign zstd cpio

.PHONY: image-deps image image-test bundle

image-deps:
	@missing=""; \
	for pkg in $(IMAGE_APT_PACKAGES); do \
		dpkg-query -W -f='$${db:Status-Status}\n' "$$pkg" 2>/dev/null | grep -qx installed || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "image-deps: installing$$missing"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi
	@# The image test asks sshd -T what the image's sshd configuration gives each user. Installed
	@# with a policy-rc.d that refuses service starts: no sshd runs on the build host.
	@dpkg-query -W -f='$${db:Status-Status}\n' openssh-server 2>/dev/null | grep -qx installed || { \
		policy=""; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && policy=1; \
		fi; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openssh-server; \
		status=$$?; \
		if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
		exit $$status; }
	@# qemu-user runs the arm64 tree's programs; the kernel needs binfmt_misc mounted for that.
	@mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
	@rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu

image: image-deps
	$(IMAGE_DIR)/build

image-test: image matrix-client
	tests/image/run-tests

# The built image's update bundle again (image/bundle), e.g. with the cooperative's key:
# make bundle SIGNING_KEY=… VERSION=…  (make image makes build/image/update with the development key).
bundle:
	$(IMAGE_DIR)/bundle build/image/hearth-$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)-arm64.img.xz build/image/update
