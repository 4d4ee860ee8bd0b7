# What `make install` changes in conf/porterd.conf for a system service:
# all addresses on port 25, the system's Maildir root, the porterd user
# (the built-in default), and what strangers are told: a generic 252 to
# VRFY and no EXPN (trusted networks still get the truth).
s|^listen  *127\.0\.0\.1:2525$|listen      0.0.0.0:25|
s|^listen  *\[::1\]:2525$|listen      [::]:25|
s|^maildir .*|maildir     /var/mail/vhosts/%d/%u|
/^user  *nobody$/d
/^group  *nogroup$/d
s|^vrfy  *on$|vrfy        252|
s|^expn  *on$|expn        off|
s|^# This file runs as-is from the source tree (`make run`): porterd answers$|# Installed by `make install`: porterd answers on port 25 of every|
s|^# on 127\.0\.0\.1:2525 and \[::1\]:2525 from the example table beside it\.$|# address from the example table beside it.|
