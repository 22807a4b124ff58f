//! The Linux `ina2xx` hwmon driver through sysfs.
