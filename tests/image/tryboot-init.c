// The whole user space of tests/image/tryboot-firmware's Raspberry Pi 3 (QEMU's raspi3b): loads
// the watchdog driver (the board's restart) and the image's hearth_tryboot module, then restarts
// with the command in HEARTH_RESTART (the kernel hands init unknown `NAME=value` parameters of
// its command line as environment), as `systemctl reboot "0 tryboot"` ends on the box.
// Built static for aarch64 by the test: aarch64-linux-gnu-gcc -static.
#include <fcntl.h>
#include <linux/module.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static void load(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || syscall(SYS_finit_module, fd, "", flags) != 0)
		fprintf(stderr, "init: cannot load %s: %m\n", path);
	else
		printf("init: loaded %s\n", path);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	const char *cmd = getenv("HEARTH_RESTART");

	load("/bcm2835_wdt.ko.xz", MODULE_INIT_COMPRESSED_FILE);
	load("/hearth_tryboot.ko", 0);
	printf("init: restarting with command '%s'\n", cmd ? cmd : "");
	fflush(stdout);
	sync();
	if (cmd && *cmd)
		syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART2, cmd);
	else
		syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART, NULL);
	perror("init: reboot");
	for (;;)
		pause();
}
