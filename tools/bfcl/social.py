"""MessageAPI, TwitterAPI and TicketAPI: messaging, posting and support tickets."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from tools.bfcl.base import Backend

__all__ = ["MessageAPI", "TicketAPI", "TwitterAPI"]


class MessageAPI(Backend):
    doc_file = "message_api"
    defaults: ClassVar[dict[str, Any]] = {
        "generated_ids": set(),
        "user_count": 4,
        "user_map": {"Alice": "USR001", "Bob": "USR002", "Catherine": "USR003", "Daniel": "USR004"},
        "inbox": [
            {"USR002": "My name is Alice. I want to connect."},
            {"USR003": "Could you upload the file?"},
            {"USR004": "Could you upload the file?"},
        ],
        "message_count": 3,
        "current_user": None,
    }

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self._random = random.Random(config.get("random_seed", 200191))
        for key in ("generated_ids", "user_count", "user_map", "inbox", "message_count", "current_user"):
            setattr(self, key, self._get(config, key))

    def _new_id(self) -> dict[str, int]:
        new_id = self._random.randint(10000, 99999)
        while new_id in self.generated_ids:
            new_id = self._random.randint(10000, 99999)
        self.generated_ids.add(new_id)
        return {"new_id": new_id}

    def list_users(self) -> dict[str, Any]:
        return {"user_list": list(self.user_map)}

    def get_user_id(self, user: str) -> dict[str, Any]:
        if user not in self.user_map:
            return {"error": f"User '{user}' not found in the workspace."}
        return {"user_id": self.user_map[user]}

    def message_login(self, user_id: str) -> dict[str, Any]:
        if user_id not in list(self.user_map.values()):
            return {"login_status": False, "message": f"User ID '{user_id}' not found."}
        self.current_user = user_id
        return {"login_status": True, "message": f"User '{user_id}' logged in successfully."}

    def message_get_login_status(self) -> dict[str, bool]:
        return {"login_status": bool(self.current_user)}

    def send_message(self, receiver_id: str, message: str) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "No user is currently logged in."}
        if receiver_id not in self.user_map.values():
            return {"error": f"Receiver ID '{receiver_id}' not found."}
        message_id = self._new_id()
        self.inbox.append({receiver_id: message})
        self.message_count += 1
        return {
            "sent_status": True,
            "message_id": message_id,
            "message": f"Message sent to '{receiver_id}' successfully.",
        }

    def delete_message(self, receiver_id: str) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "No user is currently logged in."}
        for entry in reversed(self.inbox):
            receiver = next(iter(entry))
            if receiver == receiver_id:
                self.inbox.remove(entry)
                return {
                    "deleted_status": True,
                    "receiver_id": receiver,
                    "message": f"Receiver {receiver_id}'s latest message deleted successfully.",
                }
        return {"error": f"Receiver ID {receiver_id} not found."}

    def view_messages_sent(self) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "No user is currently logged in."}
        grouped: dict[str, list[str]] = {}
        for entry in self.inbox:
            receiver, text = next(iter(entry.items()))
            grouped.setdefault(receiver, []).append(text)
        return {"messages": grouped}

    def add_contact(self, user_name: str) -> dict[str, Any]:
        if user_name in self.user_map:
            return {"error": f"User name '{user_name}' already exists."}
        self.user_count += 1
        user_id = f"USR{str(self.user_count).zfill(3)}"
        if user_id in self.user_map.values():
            return {"error": f"User ID '{user_id}' already exists."}
        self.user_map[user_name] = user_id
        return {"added_status": True, "user_id": user_id, "message": f"Contact '{user_name}' added successfully."}

    def search_messages(self, keyword: str) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "No user is currently logged in."}
        needle = keyword.lower()
        results = []
        for entry in self.inbox:
            receiver, text = next(iter(entry.items()))
            if needle in text.lower():
                results.append({"receiver_id": receiver, "message": text})
        return {"results": results}

    def get_message_stats(self) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "No user is currently logged in."}
        receivers = {next(iter(entry)) for entry in self.inbox}
        return {"stats": {"received_count": len(self.inbox), "total_contacts": len(receivers)}}


class TwitterAPI(Backend):
    doc_file = "posting_api"
    defaults: ClassVar[dict[str, Any]] = {
        "username": "john",
        "password": "john123",
        "authenticated": False,
        "tweets": {},
        "comments": {},
        "retweets": {},
        "following_list": ["alice", "bob"],
        "tweet_counter": 0,
    }

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self.username = self._get(config, "username")
        self.password = self._get(config, "password")
        self.authenticated = self._get(config, "authenticated")
        self.tweets = {int(key): tweet for key, tweet in self._get(config, "tweets").items()}
        self.comments = self._get(config, "comments")
        self.retweets = self._get(config, "retweets")
        self.following_list = self._get(config, "following_list")
        self.tweet_counter = self._get(config, "tweet_counter")
        # BFCL's post_tweet has mutable list defaults: tweets posted without tags/mentions share one list.
        self._default_tags: list[str] = []
        self._default_mentions: list[str] = []

    def _need_auth(self, action: str) -> dict[str, str] | None:
        if self.authenticated:
            return None
        return {"error": f"User not authenticated. Please authenticate before {action}."}

    def authenticate_twitter(self, username: str, password: str) -> dict[str, bool]:
        if username == self.username and password == self.password:
            self.authenticated = True
            return {"authentication_status": True}
        return {"authentication_status": False}

    def posting_get_login_status(self) -> dict[str, bool]:
        return {"login_status": bool(self.authenticated)}

    def post_tweet(self, content: str, tags: list[str] | None = None, mentions: list[str] | None = None) -> Any:
        if error := self._need_auth("posting"):
            return error
        tweet = {
            "id": self.tweet_counter,
            "username": self.username,
            "content": content,
            "tags": self._default_tags if tags is None else tags,
            "mentions": self._default_mentions if mentions is None else mentions,
        }
        self.tweets[self.tweet_counter] = tweet
        self.tweet_counter += 1
        return tweet

    def retweet(self, tweet_id: int) -> dict[str, str]:
        if error := self._need_auth("retweeting"):
            return error
        if tweet_id not in self.tweets:
            return {"error": f"Tweet with ID {tweet_id} not found."}
        mine = self.retweets.setdefault(self.username, [])
        if tweet_id in mine:
            return {"retweet_status": "Already retweeted"}
        mine.append(tweet_id)
        return {"retweet_status": "Successfully retweeted"}

    def comment(self, tweet_id: int, comment_content: str) -> dict[str, str]:
        if error := self._need_auth("commenting"):
            return error
        if tweet_id not in self.tweets:
            return {"error": f"Tweet with ID {tweet_id} not found."}
        self.comments.setdefault(tweet_id, []).append({"username": self.username, "content": comment_content})
        return {"comment_status": "Comment added successfully"}

    def mention(self, tweet_id: int, mentioned_usernames: list[str]) -> dict[str, str]:
        if tweet_id not in self.tweets:
            return {"error": f"Tweet with ID {tweet_id} not found."}
        self.tweets[tweet_id]["mentions"].extend(mentioned_usernames)
        return {"mention_status": "Users mentioned successfully"}

    def follow_user(self, username_to_follow: str) -> dict[str, Any]:
        if error := self._need_auth("following"):
            return error
        if username_to_follow in self.following_list:
            return {"follow_status": False}
        self.following_list.append(username_to_follow)
        return {"follow_status": True}

    def list_all_following(self) -> dict[str, Any]:
        if error := self._need_auth("listing following"):
            return error
        return {"following_list": self.following_list}

    def unfollow_user(self, username_to_unfollow: str) -> dict[str, Any]:
        if error := self._need_auth("unfollowing"):
            return error
        if username_to_unfollow not in self.following_list:
            return {"unfollow_status": False}
        self.following_list.remove(username_to_unfollow)
        return {"unfollow_status": True}

    def get_tweet(self, tweet_id: int) -> Any:
        if tweet_id not in self.tweets:
            return {"error": f"Tweet with ID {tweet_id} not found."}
        return self.tweets[tweet_id]

    def get_user_tweets(self, username: str) -> list[Any]:
        return [tweet for tweet in self.tweets.values() if tweet["username"] == username]

    def search_tweets(self, keyword: str) -> list[Any]:
        needle = keyword.lower()
        return [
            tweet
            for tweet in self.tweets.values()
            if needle in tweet["content"].lower() or needle in [tag.lower() for tag in tweet["tags"]]
        ]

    def get_tweet_comments(self, tweet_id: int) -> Any:
        if tweet_id not in self.tweets:
            return {"error": f"Tweet with ID {tweet_id} not found."}
        return self.comments.get(tweet_id, [])

    def get_user_stats(self, username: str) -> dict[str, int]:
        return {
            "tweet_count": sum(1 for tweet in self.tweets.values() if tweet["username"] == username),
            "following_count": len(self.following_list) if username == self.username else 0,
            "retweet_count": len(self.retweets.get(username, [])),
        }


class TicketAPI(Backend):
    doc_file = "ticket_api"
    defaults: ClassVar[dict[str, Any]] = {"ticket_queue": [], "ticket_counter": 1, "current_user": None}

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self.ticket_queue = self._get(config, "ticket_queue")
        self.ticket_counter = self._get(config, "ticket_counter")
        self.current_user = self._get(config, "current_user")

    def _find(self, ticket_id: int) -> dict[str, Any] | None:
        return next((ticket for ticket in self.ticket_queue if ticket["id"] == ticket_id), None)

    def create_ticket(self, title: str, description: str = "", priority: int = 1) -> dict[str, Any]:
        if not self.current_user:
            return {"error": "User not authenticated. Please log in to create a ticket."}
        if priority < 1 or priority > 5:
            return {"error": "Invalid priority. Priority must be between 1 and 5."}
        ticket = {
            "id": self.ticket_counter,
            "title": title,
            "description": description,
            "status": "Open",
            "priority": priority,
            "created_by": self.current_user,
        }
        self.ticket_queue.append(ticket)
        self.ticket_counter += 1
        return ticket

    def get_ticket(self, ticket_id: int) -> dict[str, Any]:
        ticket = self._find(ticket_id)
        if not ticket:
            return {"error": f"Ticket with ID {ticket_id} not found."}
        return ticket

    def close_ticket(self, ticket_id: int) -> dict[str, str]:
        ticket = self._find(ticket_id)
        if not ticket:
            return {"error": f"Ticket with ID {ticket_id} not found."}
        if ticket["status"] == "Closed":
            return {"error": f"Ticket with ID {ticket_id} is already closed."}
        ticket["status"] = "Closed"
        return {"status": f"Ticket {ticket_id} has been closed successfully."}

    def resolve_ticket(self, ticket_id: int, resolution: str) -> dict[str, str]:
        ticket = self._find(ticket_id)
        if not ticket:
            return {"error": f"Ticket with ID {ticket_id} not found."}
        if ticket["status"] == "Resolved":
            return {"error": f"Ticket with ID {ticket_id} is already resolved."}
        ticket["status"] = "Resolved"
        ticket["resolution"] = resolution
        return {"status": f"Ticket {ticket_id} has been resolved successfully."}

    def edit_ticket(self, ticket_id: int, updates: dict[str, Any]) -> dict[str, str]:
        ticket = self._find(ticket_id)
        if not ticket:
            return {"error": f"Ticket with ID {ticket_id} not found."}
        invalid = set(updates) - {"title", "description", "status", "priority"}
        if invalid:
            return {"error": f"Invalid fields for update: {', '.join(invalid)}"}
        for key, value in updates.items():
            if value is not None:
                ticket[key] = value
        return {"status": f"Ticket {ticket_id} has been updated successfully."}

    def ticket_login(self, username: str, password: str) -> dict[str, bool]:
        if username and password:
            self.current_user = username
            return {"success": True}
        return {"success": False}

    def ticket_get_login_status(self) -> dict[str, bool]:
        return {"login_status": bool(self.current_user)}

    def logout(self) -> dict[str, bool]:
        if self.current_user:
            self.current_user = None
            return {"success": True}
        return {"success": False}

    def get_user_tickets(self, status: str | None = None) -> list[Any]:
        if not self.current_user:
            return [{"error": "User not authenticated. Please log in to view tickets."}]
        tickets = [ticket for ticket in self.ticket_queue if ticket["created_by"] == self.current_user]
        if status:
            tickets = [ticket for ticket in tickets if ticket["status"].lower() == status.lower()]
        return tickets
