// How the processes of a sim instance wake each other: each event channel
// handle and each xenstore handle owns a mailbox, a datagram socket in the
// abstract namespace, so that it vanishes with its process and nothing is
// left in the instance's directory. Its address is a random 64-bit number,
// kept in the instance's shared records.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/unique_fd.h"
#include "shbuf/core/result.h"

namespace shbuf::pv::sim {

using MailboxAddress = std::uint64_t;

// The largest message a mailbox carries.
inline constexpr std::size_t kMailboxMessageMax = 8192;

class Mailbox {
 public:
  // A new mailbox of the instance whose key is `key` (see instance_key()).
  static Result<Mailbox> open(const std::string& key);

  int fd() const { return fd_.get(); }
  MailboxAddress address() const { return address_; }
  // The next message without waiting, or nullopt when none is queued.
  Result<std::optional<std::string>> receive();

 private:
  Mailbox(UniqueFd fd, MailboxAddress address) : fd_(std::move(fd)), address_(address) {}
  UniqueFd fd_;
  MailboxAddress address_ = 0;
};

// Sends without waiting: EAGAIN when the mailbox is full, ECONNREFUSED when
// no process owns it any more, EMSGSIZE over kMailboxMessageMax.
Status send_to(const std::string& key, MailboxAddress to, std::string_view message);

// Whether some process still owns the mailbox.
bool mailbox_alive(const std::string& key, MailboxAddress address);

// A key naming the sim instance at `dir` (its state file's device and inode),
// so that mailboxes of two instances never meet.
Result<std::string> instance_key(const std::string& dir);

}  // namespace shbuf::pv::sim
