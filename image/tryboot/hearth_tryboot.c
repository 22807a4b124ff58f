// SPDX-License-Identifier: GPL-2.0
/*
 * hearth_tryboot: asks the Raspberry Pi firmware for a trial boot when the system restarts
 * with a command that says "tryboot" (`systemctl reboot "0 tryboot"`), as the Raspberry Pi
 * kernel's own firmware driver does. Debian's kernel is mainline's, whose firmware driver
 * neither sets this flag nor offers /dev/vcio to user space; without it, an update's trial
 * reboot would boot the old slot again (image/README.md, "The Pi firmware's trial flag").
 *
 * The flag is the firmware's one-shot reboot flag (mailbox tag SET_REBOOT_FLAGS, value 1,
 * "tryboot"): at the next reset the firmware boots autoboot.txt's [tryboot] partition once
 * and clears it. It is set from the reboot notifier chain, which runs before the devices are
 * shut down, while the mailbox still answers: the same moment the Raspberry Pi kernel uses.
 *
 * On a board without the Raspberry Pi firmware (QEMU's virt board) the module loads, says so
 * once, and does nothing at a restart but say so again.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/notifier.h>
#include <linux/of.h>
#include <linux/reboot.h>
#include <linux/string.h>
#include <soc/bcm2835/raspberrypi-firmware.h>

/* Not in mainline's raspberrypi-firmware.h: the Raspberry Pi kernel's definition. */
#define HEARTH_RPI_FIRMWARE_SET_REBOOT_FLAGS 0x00038064
#define HEARTH_RPI_REBOOT_FLAG_TRYBOOT 0x1

static struct rpi_firmware *hearth_firmware(void)
{
	struct device_node *np;
	struct rpi_firmware *fw;

	np = of_find_compatible_node(NULL, NULL, "raspberrypi,bcm2835-firmware");
	if (!np)
		return NULL;
	fw = rpi_firmware_get(np);
	of_node_put(np);
	return fw;
}

static int hearth_tryboot_notify(struct notifier_block *nb, unsigned long action, void *data)
{
	const char *cmd = data;
	struct rpi_firmware *fw;
	u32 flags = HEARTH_RPI_REBOOT_FLAG_TRYBOOT;
	int ret;

	/* As the Raspberry Pi kernel reads it: "<partition> [flags...]", the flag by name. */
	if (action != SYS_RESTART || !cmd || !strstr(cmd, "tryboot"))
		return NOTIFY_DONE;
	fw = hearth_firmware();
	if (!fw) {
		pr_warn("restart with '%s': no Raspberry Pi firmware, no trial flag set\n", cmd);
		return NOTIFY_DONE;
	}
	ret = rpi_firmware_property(fw, HEARTH_RPI_FIRMWARE_SET_REBOOT_FLAGS, &flags, sizeof(flags));
	rpi_firmware_put(fw);
	if (ret)
		pr_err("restart with '%s': the firmware refused the trial flag (%d)\n", cmd, ret);
	else
		pr_info("restart with '%s': trial flag set, the firmware boots [tryboot] once\n", cmd);
	return NOTIFY_DONE;
}

static struct notifier_block hearth_tryboot_nb = {
	.notifier_call = hearth_tryboot_notify,
};

static int __init hearth_tryboot_init(void)
{
	struct rpi_firmware *fw = hearth_firmware();

	if (fw) {
		pr_info("Raspberry Pi firmware found: a restart with 'tryboot' sets the trial flag\n");
		rpi_firmware_put(fw);
	} else {
		pr_info("no Raspberry Pi firmware (yet): looked for again at a 'tryboot' restart\n");
	}
	return register_reboot_notifier(&hearth_tryboot_nb);
}

static void __exit hearth_tryboot_exit(void)
{
	unregister_reboot_notifier(&hearth_tryboot_nb);
}

module_init(hearth_tryboot_init);
module_exit(hearth_tryboot_exit);

MODULE_DESCRIPTION("hearth: the Raspberry Pi firmware's trial boot flag at a 'tryboot' restart");
MODULE_AUTHOR("hearth");
MODULE_LICENSE("GPL");
